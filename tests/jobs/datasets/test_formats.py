import numpy as np
import pyarrow as pa
import pytest

from conf.errors import SchemaMismatch
from jobs.datasets.formats import (
    RAW_EVENTS_SCHEMA,
    USERS_SCHEMA,
    events_table,
    iso_utc,
    write_parquet,
    write_parquet_stream,
)


def test_iso_utc():
    assert iso_utc(np.array([0, 86399, 874724710])).to_pylist() == [
        "1970-01-01T00:00:00Z", "1970-01-01T23:59:59Z", "1997-09-20T03:05:10Z"
    ]


def test_events_table_values_in_shortest_form():
    table = events_table(["a", "b", "c"], ["u"] * 3, ["i"] * 3, ["view", "rating", "click"],
                         np.array([0, 1, 2]), value=np.array([12.5, 4.0, np.nan]))
    assert table.column("value").to_pylist() == ["12.5", "4", None]


def test_write_rejects_wrong_type_and_writes_nothing(tmp_path):
    bad = pa.table({"user_id": ["u1"], "attributes": pa.array([[("age", "3")]],
                    pa.map_(pa.string(), pa.string())), "created_at": ["2024-01-01"]})
    with pytest.raises(SchemaMismatch, match=r"created_at: string \(declared timestamp"):
        write_parquet(bad, tmp_path / "users.parquet", USERS_SCHEMA)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_null_key(tmp_path):
    bad = pa.table({"user_id": pa.array([None], pa.string()),
                    "attributes": pa.array([[]], pa.map_(pa.string(), pa.string())),
                    "created_at": pa.array([None], pa.timestamp("us", tz="UTC"))})
    with pytest.raises(SchemaMismatch, match="user_id: has nulls"):
        write_parquet(bad, tmp_path / "users.parquet", USERS_SCHEMA)


def test_stream_rejects_wrong_columns_and_leaves_no_file(tmp_path):
    good = events_table(["a"], ["u"], ["i"], "click", np.array([0]))
    bad = good.drop_columns(["surface"])
    with pytest.raises(SchemaMismatch, match=r"chunk 1"):
        write_parquet_stream(iter([good, bad]), tmp_path / "e.parquet", RAW_EVENTS_SCHEMA)
    assert list(tmp_path.iterdir()) == []
