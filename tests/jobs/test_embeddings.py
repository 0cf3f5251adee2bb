"""ALS embeddings, ``implicit`` backend and the shared pure parts (no Spark session)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from conf.errors import EmptyInput, FactorizationError
from conf.pipeline import AlsSettings
from jobs.als_fit import fit_implicit, fold_in_users
from jobs.embeddings import build_matrix, embedding_table, model_version, run
from jobs.lake import Lake
from jobs.tables import ITEM_EMBEDDINGS, TRAINING_MATRIX, USER_EMBEDDINGS
from tests.conftest import recpipe

DS = "2024-03-05"
SMALL = {"factors": 2, "iterations": 30, "regularization": 0.1, "alpha": 5.0, "num_threads": 1}
"""Two factors for two blocks: the model can hold the block structure and little else."""


def checkerboard(n: int = 20) -> sp.csr_matrix:
    """n x n: user u likes item i when u and i have the same parity, except every fifth
    such pair is left out. So each user's block is the items of its own parity."""
    rows, cols = zip(*[(u, i) for u in range(n) for i in range(n)
                       if u % 2 == i % 2 and (u + i) % 5 != 0], strict=True)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))


def assert_blocks_rank_first(users: np.ndarray, items: np.ndarray) -> None:
    scores = users @ items.T
    n_items = items.shape[0]
    for u in range(users.shape[0]):
        same = [i for i in range(n_items) if i % 2 == u % 2]
        other = [i for i in range(n_items) if i % 2 != u % 2]
        assert scores[u, same].min() > scores[u, other].max(), f"user {u}"


def matrix_table(triples: list[tuple[str, str, float]], ds: str = DS) -> pa.Table:
    n = len(triples)
    users, items, conf = zip(*triples, strict=True) if triples else ((), (), ())
    return pa.table({
        "user_id": pa.array(users, pa.string()),
        "item_id": pa.array(items, pa.string()),
        "confidence": pa.array(conf, pa.float64()),
        "n_events": pa.array([1] * n, pa.int64()),
        "last_ts": pa.array([datetime(2024, 3, 1, tzinfo=UTC)] * n, pa.timestamp("us", "UTC")),
        "ds": pa.array([ds] * n, pa.string()),
    })


def checkerboard_triples(n: int = 12) -> list[tuple[str, str, float]]:
    m = checkerboard(n).tocoo()
    return [(f"u{u:02d}", f"i{i:02d}", 1.0 + (u + i) % 3) for u, i in zip(m.row, m.col,
                                                                          strict=True)]


# -- ids and the matrix ---------------------------------------------------------------------
def test_build_matrix_numbers_ids_in_sorted_order():
    got = build_matrix(pa.array(["u2", "u10", "u1", "u2"]), pa.array(["b", "a", "b", "a"]),
                       pa.array([1.0, 2.0, 3.0, 4.0]))
    assert got.user_ids.to_pylist() == ["u1", "u10", "u2"]
    assert got.item_ids.to_pylist() == ["a", "b"]
    np.testing.assert_array_equal(got.matrix.toarray(), [[0, 3], [2, 0], [4, 1]])
    assert got.matrix.dtype == np.float32


@pytest.mark.parametrize("conf", [[1.0, float("nan")], [1.0, -0.5], [1.0, float("inf")]])
def test_build_matrix_refuses_bad_confidence(conf):
    with pytest.raises(ValueError, match="confidence"):
        build_matrix(pa.array(["u", "v"]), pa.array(["a", "a"]), pa.array(conf))


def test_build_matrix_refuses_duplicate_pairs_and_empty_input():
    with pytest.raises(ValueError, match=r"1 duplicate .*\(v, a\)"):
        build_matrix(pa.array(["u", "v", "v"]), pa.array(["a", "a", "a"]),
                     pa.array([1.0, 1.0, 2.0]))
    with pytest.raises(EmptyInput):
        build_matrix(pa.array([], pa.string()), pa.array([], pa.string()),
                     pa.array([], pa.float64()))


# -- fitting --------------------------------------------------------------------------------
def test_implicit_checkerboard_recommends_own_block():
    users, items = fit_implicit(checkerboard(), AlsSettings(**SMALL), seed=7)
    assert users.shape == (20, 2) and items.shape == (20, 2)
    assert users.dtype == np.float32
    assert_blocks_rank_first(users, items)


def test_implicit_same_seed_gives_identical_vectors():
    als = AlsSettings(**{**SMALL, "num_threads": 2})
    first = fit_implicit(checkerboard(), als, seed=3)
    again = fit_implicit(checkerboard(), als, seed=3)
    other = fit_implicit(checkerboard(), als, seed=4)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_fit_refuses_nan_factors():
    als = AlsSettings(**{**SMALL, "alpha": 1e39})  # 1 + alpha * x overflows float32 to inf
    with pytest.warns(RuntimeWarning), pytest.raises(FactorizationError, match="NaN"):
        fit_implicit(checkerboard(), als, seed=7)


def test_embedding_table_refuses_unpublishable_vectors():
    ids = pa.array(["a", "b"])
    with pytest.raises(FactorizationError, match="NaN"):
        embedding_table(ids, np.array([[1.0, np.nan], [0.0, 1.0]]), "v", DS)
    with pytest.raises(FactorizationError, match="all zero"):
        embedding_table(ids, np.zeros((2, 3)), "v", DS)
    with pytest.raises(ValueError, match="2 ids"):
        embedding_table(ids, np.ones((3, 2)), "v", DS)


# -- fold-in --------------------------------------------------------------------------------
def test_fold_in_matches_hand_computed_solution():
    items = np.array([[1.0], [2.0]])  # I=2, F=1: Y'Y = 5
    rows = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    implicit = AlsSettings(factors=1, alpha=1.0, regularization=0.5)
    spark = AlsSettings(factors=1, alpha=1.0, regularization=0.5, backend="spark")
    # user 0: c = (2, 2); A = 5 + 1*1 + 1*4 + reg_u, b = 2*1 + 2*2 = 6
    # user 1: c = (2,);   A = 5 + 1*1 + reg_u,       b = 2
    np.testing.assert_allclose(fold_in_users(items, rows, implicit)[:, 0],
                               [6 / 10.5, 2 / 6.5, 0.0], rtol=1e-6)
    # Spark scales the penalty by the user's interaction count: reg_u = 0.5 * n_u
    np.testing.assert_allclose(fold_in_users(items, rows, spark)[:, 0],
                               [6 / 11.0, 2 / 6.5, 0.0], rtol=1e-6)


def test_fold_in_reproduces_fitted_user_vectors():
    matrix = checkerboard()
    als = AlsSettings(**SMALL)
    users, items = fit_implicit(matrix, als, seed=7)
    folded = fold_in_users(items, matrix, als)
    # implicit solves users against the previous sweep's items (and by conjugate gradient),
    # so a converged fit agrees closely but not to the last bit
    cosine = (folded * users).sum(1) / np.linalg.norm(folded, axis=1) / np.linalg.norm(
        users, axis=1)
    assert cosine.min() > 0.999
    np.testing.assert_allclose(folded, users, atol=0.05 * np.abs(users).max())


def test_fold_in_refuses_misshaped_input():
    items = np.ones((3, 2))
    with pytest.raises(ValueError, match="4 columns but item_vecs has 3 rows"):
        fold_in_users(items, sp.csr_matrix((1, 4)), AlsSettings())
    with pytest.raises(TypeError):
        fold_in_users(items, np.ones((1, 3)), AlsSettings())
    assert fold_in_users(items, sp.csr_matrix((0, 3)), AlsSettings()).shape == (0, 2)


# -- model version --------------------------------------------------------------------------
def test_model_version_is_deterministic_and_tracks_model_settings():
    als = AlsSettings()
    version = model_version(DS, als, 42)
    assert re.fullmatch(rf"als-{DS}-[0-9a-f]{{8}}", version)
    assert model_version(DS, AlsSettings(), 42) == version
    assert model_version(DS, AlsSettings(num_threads=1), 42) == version
    changed = [model_version("2024-03-06", als, 42), model_version(DS, als, 43),
               model_version(DS, AlsSettings(backend="spark"), 42),
               model_version(DS, AlsSettings(factors=64), 42)]
    assert len({version, *changed}) == 5


# -- the job --------------------------------------------------------------------------------
def _settings(settings, **als):
    return settings.model_copy(update={"als": AlsSettings(**{**SMALL, **als})})


def test_run_writes_both_tables_with_the_contract(settings):
    settings = _settings(settings)
    lake = Lake(settings)
    triples = checkerboard_triples(12)
    lake.overwrite_partitions(TRAINING_MATRIX.name, matrix_table(triples), [DS])
    lake.overwrite_partitions(TRAINING_MATRIX.name, matrix_table([("x", "y", 9.0)],
                                                                 "2024-03-04"), ["2024-03-04"])
    result = run(None, settings, DS)

    users = lake.read_arrow(USER_EMBEDDINGS.name, [DS])
    items = lake.read_arrow(ITEM_EMBEDDINGS.name, [DS])
    assert users.schema.equals(USER_EMBEDDINGS.schema)
    assert items.schema.equals(ITEM_EMBEDDINGS.schema)
    assert sorted(users["id"].to_pylist()) == [f"u{u:02d}" for u in range(12)]
    assert sorted(items["id"].to_pylist()) == [f"i{i:02d}" for i in range(12)]
    assert {len(v) for v in users["vector"].to_pylist() + items["vector"].to_pylist()} == {2}
    versions = set(users["model_version"].to_pylist() + items["model_version"].to_pylist())
    assert versions == {result["model_version"]}
    assert set(users["ds"].to_pylist()) == {DS}
    assert (result["users"], result["items"], result["nnz"]) == (12, 12, len(triples))

    u = dict(zip(users["id"].to_pylist(), users["vector"].to_pylist(), strict=True))
    i = dict(zip(items["id"].to_pylist(), items["vector"].to_pylist(), strict=True))
    user_vecs = np.array([u[f"u{k:02d}"] for k in range(12)])
    item_vecs = np.array([i[f"i{k:02d}"] for k in range(12)])
    assert_blocks_rank_first(user_vecs, item_vecs)

    run(None, settings, DS)  # rerun: same partition replaced by identical vectors
    again = lake.read_arrow(USER_EMBEDDINGS.name, [DS])
    assert again.num_rows == 12
    again_u = dict(zip(again["id"].to_pylist(), again["vector"].to_pylist(), strict=True))
    assert again_u == u


def test_run_refuses_a_missing_partition(settings):
    with pytest.raises(EmptyInput, match=DS):
        run(None, _settings(settings), DS)


def test_main_end_to_end_and_bad_input(settings, tmp_path, capsys):
    Lake(settings).overwrite_partitions(TRAINING_MATRIX.name,
                                        matrix_table(checkerboard_triples(6)), [DS])
    root = settings.lake_root
    assert recpipe(["embeddings", "--ds", DS, "--lake-root", root, "--factors", "3",
                    "--iterations", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["users"], out["factors"]) == (6, 3)
    assert recpipe(["embeddings", "--ds", DS, "--lake-root", root, "--factors", "0"]) == 2
    assert "factors" in capsys.readouterr().err
    assert recpipe(["embeddings", "--ds", "2024-03-01", "--lake-root", root, "--factors", "3"]) == 2
    assert "no rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        recpipe(["embeddings", "--ds", "2024-13-01", "--lake-root", root])
    assert exc.value.code == 2


@pytest.mark.gpu
def test_implicit_gpu_checkerboard():
    users, items = fit_implicit(checkerboard(), AlsSettings(**SMALL, use_gpu=True), seed=7)
    assert users.shape == (20, 2)
    assert_blocks_rank_first(users, items)
