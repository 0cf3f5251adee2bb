"""Regrouping ``mapInArrow`` batches so that a user's rows are never split."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs.spark_arrow import whole_users


def sorted_rows(n_users: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, n_users)
    users = np.repeat([f"u{k:04d}" for k in range(n_users)], counts)
    return pa.table({"user_id": users, "row": np.arange(len(users))})


@pytest.mark.parametrize("chunk", [1, 3, 17, 1000, 10_000])
def test_no_user_is_split_and_no_row_is_lost(chunk):
    table = sorted_rows(200, seed=chunk)
    out = list(whole_users(table.to_batches(max_chunksize=chunk)))
    seen: set[str] = set()
    for batch in out:
        users = set(batch.column("user_id").to_pylist())
        assert not users & seen, "a user's rows came in two batches"
        seen |= users
    rows = pa.Table.from_batches(out).column("row").to_pylist()
    assert rows == table.column("row").to_pylist()


def test_a_batch_is_never_much_larger_than_its_input():
    table = sorted_rows(500, seed=7)
    out = list(whole_users(table.to_batches(max_chunksize=100)))
    assert max(b.num_rows for b in out) < 100 + 40  # one held-back user at most
    assert len(out) > 10


def test_empty_input_and_empty_batches():
    assert list(whole_users([])) == []
    table = sorted_rows(5, seed=1)
    empty = table.slice(0, 0).to_batches() or [pa.RecordBatch.from_pylist(
        [], schema=table.schema)]
    out = list(whole_users([*empty, *table.to_batches(max_chunksize=4), *empty]))
    assert sum(b.num_rows for b in out) == table.num_rows
