"""Record-batch streams: shuffling buffer, Parquet reading."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conf.errors import InputDataError, SchemaError
from training.data import parquet_batches, parquet_files, shuffle_rebatch, table_batches


def ids(tables) -> list[int]:
    return [v for t in tables for v in t.column("i").to_pylist()]


def stream(n: int, chunk: int):
    return pa.table({"i": np.arange(n)}).to_batches(max_chunksize=chunk)


def test_rebatch_keeps_every_row_once_and_cuts_full_batches():
    out = list(shuffle_rebatch(stream(103, 7), 10, 25, np.random.default_rng(0)))
    assert sorted(ids(out)) == list(range(103))
    assert [t.num_rows for t in out] == [10] * 10 + [3]
    assert ids(out) != list(range(103))


def test_rebatch_without_rng_keeps_order():
    out = list(shuffle_rebatch(stream(23, 4), 5, 8, None))
    assert ids(out) == list(range(23))


def test_rebatch_is_reproducible():
    a = ids(shuffle_rebatch(stream(50, 6), 8, 16, np.random.default_rng(3)))
    b = ids(shuffle_rebatch(stream(50, 6), 8, 16, np.random.default_rng(3)))
    assert a == b


def test_table_batches_permutes_with_rng():
    table = pa.table({"i": np.arange(20)})
    out = list(table_batches(table, 6, np.random.default_rng(1)))
    assert [b.num_rows for b in out] == [6, 6, 6, 2]
    assert sorted(ids(out)) == list(range(20))


def test_parquet_columns_optional_and_missing(tmp_path):
    pq.write_table(pa.table({"a": [1, 2], "w": [0.5, 1.0]}), tmp_path / "one.parquet")
    (tmp_path / "sub").mkdir()
    pq.write_table(pa.table({"a": [3], "b": [9]}), tmp_path / "sub" / "two.parquet")
    files = parquet_files([tmp_path])
    assert [f.name for f in files] == ["one.parquet", "two.parquet"]
    got = list(parquet_batches(files, ["a"], optional=["w"]))
    assert got[0].schema.names == ["a", "w"] and got[1].schema.names == ["a"]
    with pytest.raises(SchemaError, match=r"lacks columns \['b'\]"):
        list(parquet_batches(files, ["a", "b"]))


def test_missing_paths_raise(tmp_path):
    with pytest.raises(InputDataError, match="no such file"):
        parquet_files([tmp_path / "nope"])
    with pytest.raises(InputDataError, match="no Parquet files"):
        parquet_files([tmp_path])
