"""ALS embeddings, Spark MLlib backend (tiny data on the shared session)."""

from __future__ import annotations

import numpy as np
import pytest

from conf.pipeline import AlsSettings
from jobs.cf.errors import FactorizationError
from jobs.embeddings import ITEM_EMBEDDINGS, USER_EMBEDDINGS, fold_in_users, run
from jobs.embeddings_spark import check_factor_frame, check_input, fit_als, index_ids
from jobs.lake import Lake
from jobs.schemas import TRAINING_MATRIX
from tests.jobs.test_embeddings import (
    DS,
    SMALL,
    assert_blocks_rank_first,
    checkerboard,
    checkerboard_triples,
    matrix_table,
)

pytestmark = pytest.mark.spark

SPARK_SMALL = {**SMALL, "backend": "spark", "iterations": 8, "spark_blocks": 2}


def to_numpy(factors, n: int, f: int) -> np.ndarray:
    out = np.full((n, f), np.nan, dtype=np.float32)
    for row in factors.collect():
        out[row["id"]] = row["features"]
    return out


def test_index_ids_numbers_sorted_ids_from_zero(spark):
    df = spark.createDataFrame([("u2",), ("u10",), ("u1",), ("u2",)], "user_id string")
    got = sorted((r["user_id"], r["idx"]) for r in index_ids(df, "user_id").collect())
    assert got == [("u1", 0), ("u10", 1), ("u2", 2)]


def test_index_ids_across_several_sorted_partitions(spark):
    key = "spark.sql.adaptive.coalescePartitions.enabled"
    before = spark.conf.get(key)
    spark.conf.set(key, "false")  # keep the sort's 2 partitions apart (AQE would merge them)
    try:
        ids = [f"id{k:03d}" for k in range(0, 300, 7)]
        df = spark.createDataFrame([(v,) for v in reversed(ids)], "item_id string")
        index = index_ids(df.repartition(3), "item_id")
        parts = index.rdd.getNumPartitions()
        got = {r["item_id"]: r["idx"] for r in index.collect()}
    finally:
        spark.conf.set(key, before)
    assert parts > 1
    assert got == {v: k for k, v in enumerate(sorted(ids))}


def test_spark_checkerboard_and_fold_in(spark):
    matrix = checkerboard()
    coo = matrix.tocoo()
    ratings = spark.createDataFrame(
        [(int(u), int(i), float(c)) for u, i, c in zip(coo.row, coo.col, coo.data, strict=True)],
        "user_idx int, item_idx int, confidence float")
    als = AlsSettings(**SPARK_SMALL)
    model = fit_als(ratings, als, seed=7)
    users = to_numpy(model.userFactors, 20, als.factors)
    items = to_numpy(model.itemFactors, 20, als.factors)
    assert_blocks_rank_first(users, items)
    # MLlib solves users last, against the final items, by Cholesky with regParam * n_u:
    # the closed-form fold-in must give back its user vectors
    np.testing.assert_allclose(fold_in_users(items, matrix, als), users, rtol=1e-4, atol=1e-5)


def test_factor_check_refuses_nan_and_all_zero(spark):
    schema = "id int, features array<float>"
    nan = spark.createDataFrame([(0, [1.0, 2.0]), (1, [float("nan"), 0.0])], schema)
    with pytest.raises(FactorizationError, match="1 vector"):
        check_factor_frame(nan, "user factors")
    zero = spark.createDataFrame([(0, [0.0, 0.0]), (1, [0.0, 0.0])], schema)
    with pytest.raises(FactorizationError, match="all zero"):
        check_factor_frame(zero, "item factors")
    check_factor_frame(spark.createDataFrame([(0, [0.0, -1.0])], schema), "fine")


def test_check_input_refuses_bad_rows(spark):
    schema = "user_id string, item_id string, confidence double"
    assert check_input(spark.createDataFrame([("u", "a", 1.0), ("u", "b", 0.0)], schema)) == 2
    with pytest.raises(ValueError, match="1 duplicate"):
        check_input(spark.createDataFrame([("u", "a", 1.0), ("u", "a", 2.0)], schema))
    with pytest.raises(ValueError, match="1 row"):
        check_input(spark.createDataFrame([("u", "a", float("nan")), ("u", "b", 1.0)], schema))


@pytest.mark.slow
def test_run_spark_backend_writes_the_same_contract(spark, settings):
    settings = settings.model_copy(update={"als": AlsSettings(**SPARK_SMALL)})
    lake = Lake(settings)
    lake.overwrite_partitions(TRAINING_MATRIX.name, matrix_table(checkerboard_triples(12)), [DS])
    result = run(spark, settings, DS)
    users = lake.read_arrow(USER_EMBEDDINGS.name, [DS])
    items = lake.read_arrow(ITEM_EMBEDDINGS.name, [DS])
    assert users.schema.equals(USER_EMBEDDINGS.schema)
    assert items.schema.equals(ITEM_EMBEDDINGS.schema)
    assert sorted(users["id"].to_pylist()) == [f"u{u:02d}" for u in range(12)]
    assert sorted(items["id"].to_pylist()) == [f"i{i:02d}" for i in range(12)]
    versions = set(users["model_version"].to_pylist() + items["model_version"].to_pylist())
    assert versions == {result["model_version"]}
    assert result["backend"] == "spark"
    u = dict(zip(users["id"].to_pylist(), users["vector"].to_pylist(), strict=True))
    i = dict(zip(items["id"].to_pylist(), items["vector"].to_pylist(), strict=True))
    assert_blocks_rank_first(np.array([u[f"u{k:02d}"] for k in range(12)]),
                             np.array([i[f"i{k:02d}"] for k in range(12)]))
