"""ALS embeddings, Spark MLlib backend (tiny data on the shared session)."""

from __future__ import annotations

import numpy as np
import pytest

from conf.errors import FactorizationError
from conf.pipeline import AlsSettings
from jobs.als_fit import fold_in_users
from jobs.embeddings import run
from jobs.embeddings_spark import check_factor_frame, check_input, fit_als, index_ids
from jobs.lake import Lake
from jobs.tables import ITEM_EMBEDDINGS, TRAINING_MATRIX, USER_EMBEDDINGS
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


# -- long fits: checkpoints keep the lineage short ------------------------------------------
def held_out_auc(users: dict[str, np.ndarray], items: dict[str, np.ndarray],
                 held: list[tuple[str, str]], seen: dict[str, set[str]],
                 rng: np.random.Generator) -> float:
    """Share of held-out (user, item) pairs scored above a random item the user never
    touched (0.5 for random vectors)."""
    ids = sorted(items)
    wins = total = 0
    for user, item in held:
        if user not in users or item not in items:
            continue
        while (other := ids[rng.integers(len(ids))]) in seen[user]:
            pass
        wins += float(users[user] @ items[item]) > float(users[user] @ items[other])
        total += 1
    assert total > 100, f"only {total} held-out pairs could be scored"
    return wins / total


def test_checkpoint_root_defaults_under_work_dir_and_refuses_local_disk_on_a_cluster(
        settings, tmp_path):
    from conf import ConfigError
    from jobs.embeddings_spark import checkpoint_root

    scratch = str(tmp_path / "scratch")
    local = settings.model_copy(update={"work_dir": scratch})
    assert checkpoint_root(local) == f"{scratch}/checkpoints"
    cluster_spark = settings.spark.model_copy(update={"master": "spark://head:7077"})
    cluster = local.model_copy(update={"spark": cluster_spark})
    with pytest.raises(ConfigError, match="work_dir: .*driver's local disk"):
        checkpoint_root(cluster)
    shared = cluster.model_copy(update={"work_dir": "s3a://bucket/jobs"})
    assert checkpoint_root(shared) == "s3a://bucket/jobs/checkpoints"
    override = shared.model_copy(update={"als": shared.als.model_copy(
        update={"spark_checkpoint_dir": f"file://{tmp_path}/ck"})})
    with pytest.raises(ConfigError, match="als.spark_checkpoint_dir"):
        checkpoint_root(override)


@pytest.mark.slow
def test_fifty_iterations_complete_with_the_default_checkpoints(spark, settings, tmp_path):
    """Without checkpoints MLlib's lineage overflows the task stack after about ten
    iterations on the local profile (``recpipe bench als-lineage``): this fit would take the
    session's JVM down."""
    from jobs.embeddings_spark import checkpoint_folder, checkpoint_root

    settings = settings.model_copy(update={"work_dir": str(tmp_path / "work")})
    n = 24
    matrix = checkerboard(n)
    coo = matrix.tocoo()
    ratings = spark.createDataFrame(
        [(int(u), int(i), 1.0) for u, i in zip(coo.row, coo.col, strict=True)],
        "user_idx int, item_idx int, confidence float")
    als = AlsSettings(**{**SPARK_SMALL, "iterations": 50})
    assert als.spark_checkpoint_interval < als.iterations
    root = checkpoint_root(settings)
    with checkpoint_folder(spark, root, "test") as folder:
        model = fit_als(ratings, als, seed=3, checkpoint_dir=folder)
        users = to_numpy(model.userFactors, n, als.factors)
        items = to_numpy(model.itemFactors, n, als.factors)
        assert any((tmp_path / "work" / "checkpoints").iterdir()), "nothing was checkpointed"
    assert not any((tmp_path / "work" / "checkpoints").iterdir()), "checkpoints left behind"
    scores = users @ items.T
    # the pairs the checkerboard leaves out are its held-out items: each must outscore every
    # item of the other parity (random vectors would do so for 1 pair in n / 2 + 1)
    held = [(u, i) for u in range(n) for i in range(n) if u % 2 == i % 2 and (u + i) % 5 == 0]
    for u, i in held:
        assert scores[u, i] > scores[u, [j for j in range(n) if j % 2 != u % 2]].max(), (u, i)


@pytest.mark.slow
def test_spark_backend_fits_movielens_100k_for_the_configured_iterations(spark, settings,
                                                                         tmp_path):
    """The embeddings job with ``als.backend: spark`` and every other ALS setting at its
    default (15 iterations of rank 128 at the time of writing) on MovieLens 100K."""
    from jobs.datasets.movielens import fetch_movielens_100k
    from tests.conftest import REPO

    folder = fetch_movielens_100k(REPO / "var" / "data" / "cache")
    pairs = np.loadtxt(folder / "ml-100k.inter", skiprows=1, usecols=(0, 1), dtype=np.int64)
    rng = np.random.default_rng(11)
    held_mask = rng.random(len(pairs)) < 0.1
    train = [(f"u{u}", f"i{i}") for u, i in pairs[~held_mask]]
    held = [(f"u{u}", f"i{i}") for u, i in pairs[held_mask]]
    seen: dict[str, set[str]] = {}
    for u, i in train + held:
        seen.setdefault(u, set()).add(i)
    als = settings.als.model_copy(update={"backend": "spark"})
    assert als.iterations >= 10, "the default must be a real fit, not one or two sweeps"
    settings = settings.model_copy(update={"als": als, "work_dir": str(tmp_path / "work")})
    lake = Lake(settings)
    lake.overwrite_partitions(TRAINING_MATRIX.name,
                              matrix_table([(u, i, 1.0) for u, i in train]), [DS])
    result = run(spark, settings, DS)
    assert result["backend"] == "spark"
    assert result["users"] == len({u for u, _ in train})
    assert not any((tmp_path / "work" / "checkpoints").iterdir()), "checkpoints left behind"
    users_t = lake.read_arrow(USER_EMBEDDINGS.name, [DS])
    items_t = lake.read_arrow(ITEM_EMBEDDINGS.name, [DS])
    users = dict(zip(users_t["id"].to_pylist(),
                     np.asarray(users_t["vector"].to_pylist(), np.float32), strict=True))
    items = dict(zip(items_t["id"].to_pylist(),
                     np.asarray(items_t["vector"].to_pylist(), np.float32), strict=True))
    assert all(len(v) == als.factors for v in users.values())
    auc = held_out_auc(users, items, held, seen, rng)
    assert auc > 0.8, f"held-out AUC {auc:.3f}"
