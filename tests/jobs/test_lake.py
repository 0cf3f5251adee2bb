import pyarrow as pa
import pytest

from conf.errors import SchemaMismatch
from jobs.lake import Lake, conform, partition_predicate
from jobs.tables import TRAINING_MATRIX

pytestmark = pytest.mark.spark


def _matrix(ds, users, conf=1.0):
    n = len(users)
    return pa.table({
        "user_id": users, "item_id": ["i"] * n, "confidence": [conf] * n, "n_events": [1] * n,
        "last_ts": pa.array([0] * n, pa.timestamp("us", tz="UTC")), "ds": [ds] * n,
    })


def test_conform_rejects_missing_extra_and_null_columns():
    t = _matrix("2024-01-01", ["u1"])
    with pytest.raises(SchemaMismatch, match="missing.*confidence"):
        conform(t.drop_columns(["confidence"]), TRAINING_MATRIX)
    with pytest.raises(SchemaMismatch, match="unexpected.*extra"):
        conform(t.append_column("extra", pa.array([1])), TRAINING_MATRIX)
    bad = t.set_column(0, "user_id", pa.array([None], pa.string()))
    with pytest.raises(SchemaMismatch, match="user_id.*null"):
        conform(bad, TRAINING_MATRIX)
    wrong = t.set_column(2, "confidence", pa.array(["high"]))
    with pytest.raises(SchemaMismatch, match="confidence"):
        conform(wrong, TRAINING_MATRIX)


def test_partition_predicate_quotes_values():
    assert partition_predicate("ds", ["a"]) == "ds = 'a'"
    assert partition_predicate("ds", ["b", "a", "b"]) == "ds IN ('a', 'b')"
    assert partition_predicate("ds", ["o'x"]) == "ds = 'o''x'"


def test_overwrite_replaces_only_its_partition(settings):
    lake = Lake(settings)
    name = TRAINING_MATRIX.name
    lake.overwrite_partitions(name, _matrix("2024-01-01", ["a", "b"]))
    lake.overwrite_partitions(name, _matrix("2024-01-02", ["c"]))
    lake.overwrite_partitions(name, _matrix("2024-01-01", ["d"], 2.0))
    rows = lake.read_arrow(name).to_pylist()
    assert sorted((r["ds"], r["user_id"]) for r in rows) == [("2024-01-01", "d"),
                                                              ("2024-01-02", "c")]
    assert lake.partitions(name) == ["2024-01-01", "2024-01-02"]
    assert lake.version(name) == 2
    # the older version is still readable (time travel)
    old = lake.read_arrow(name, version=1).column("user_id").to_pylist()
    assert sorted(old) == ["a", "b", "c"]


def test_append_of_the_same_batch_is_a_noop(settings):
    lake = Lake(settings)
    name = TRAINING_MATRIX.name
    assert lake.append(name, _matrix("2024-01-01", ["a"]), "batch-1") is True
    assert lake.append(name, _matrix("2024-01-01", ["a"]), "batch-1") is False
    assert lake.append(name, _matrix("2024-01-01", ["b"]), "batch-2") is True
    assert sorted(lake.read_arrow(name).column("user_id").to_pylist()) == ["a", "b"]


def test_spark_reads_the_snapshot_not_removed_files(settings, spark):
    lake = Lake(settings)
    name = TRAINING_MATRIX.name
    lake.overwrite_partitions(name, _matrix("2024-01-01", ["a", "b"]))
    lake.overwrite_partitions(name, _matrix("2024-01-01", ["z"]))
    df = lake.read_spark(spark, name)
    assert [r.user_id for r in df.collect()] == ["z"]
    assert lake.read_spark(spark, name, ["2099-01-01"]).count() == 0
    empty = Lake(settings).read_spark(spark, "silver/interactions")
    assert empty.count() == 0 and "event_id" in empty.columns


def test_write_spark_streams_into_one_commit(settings, spark):
    lake = Lake(settings)
    name = TRAINING_MATRIX.name
    src = lake.read_spark(spark, name)  # empty, right schema
    assert src.count() == 0
    df = spark.createDataFrame(_matrix("2024-01-03", ["x", "y"]).to_pandas())
    version = lake.write_spark(name, df, ["2024-01-03"])
    assert version == 0
    assert sorted(lake.read_arrow(name).column("user_id").to_pylist()) == ["x", "y"]


READ_PARTITION = """
import sys
from conf import load_settings
from jobs.lake import Lake
lake = Lake(load_settings(overrides={"lake_root": sys.argv[1]}))
print(lake.read_arrow("gold/training_matrix", ["2024-01-02"]).column("user_id").to_pylist())
"""


def test_a_partition_read_exits_cleanly(settings, tmp_path):
    """Reading one partition and exiting must give exit status 0: delta-rs's own Arrow
    dataset with partition filters aborts the interpreter at exit now and then (SIGABRT,
    "terminate called without an active exception"), which fails a finished task."""
    import subprocess
    import sys

    lake = Lake(settings)
    lake.overwrite_partitions(TRAINING_MATRIX.name, _matrix("2024-01-01", ["a"]))
    lake.overwrite_partitions(TRAINING_MATRIX.name, _matrix("2024-01-02", ["b", "c"]))
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", READ_PARTITION, settings.lake_root],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "['b', 'c']"
    topn = lake.read_arrow(TRAINING_MATRIX.name, ["2024-01-01"])
    assert topn.column("ds").to_pylist() == ["2024-01-01"]
