import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from deltalake import write_deltalake

from conf.errors import EmptyInput
from conf.retrieval import ContentSettings
from jobs.content import (
    fit_ridge,
    holdout_cosine,
    numeric_block,
    run,
    title_tokens,
    token_block,
    transform,
)
from jobs.lake import Lake
from jobs.tables import ITEM_CONTENT, ITEM_EMBEDDINGS, SILVER_ITEMS
from tests.conftest import recpipe

ATTR = SILVER_ITEMS.schema.field("attributes").type


def test_title_tokens_drop_stopwords_short_words_and_case():
    assert title_tokens("The Lord of the Rings: 2 (Part II)") == ["lord", "rings", "part", "ii"]
    assert title_tokens(None) == []


def test_token_block_tfidf_and_min_df():
    docs = [["x", "y"], ["x", "x"], ["z"]]
    out = token_block(docs, min_df=1).toarray()
    idf_x, idf_y = math.log(4 / 3) + 1, math.log(4 / 2) + 1   # df(x)=2, df(y)=1, N=3
    norm = math.hypot(idf_x, idf_y)
    np.testing.assert_allclose(out, [[idf_x / norm, idf_y / norm, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(token_block(docs, min_df=2).toarray(), [[1], [1], [0]])


def test_hashed_block_keeps_inner_products_without_collisions():
    docs = [["red", "blue"], ["blue", "green", "green"], ["red"], []]
    exact = token_block(docs, min_df=1).toarray()
    hashed = token_block(docs, min_df=1, hash_dim=1 << 20).toarray()
    assert hashed.shape == (4, 1 << 20)
    np.testing.assert_allclose(hashed @ hashed.T, exact @ exact.T, atol=1e-12)


def test_numeric_block_buckets_and_missing_values():
    out = numeric_block([["1985", "5"], ["1995", None], ["2000", "x"], [None, "50"]],
                        [[1990, 2000], [10]]).toarray()
    # attribute 1: buckets <1990, [1990,2000), >=2000 (cols 0-2); attribute 2: <10, >=10
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(out, [[r, 0, 0, r, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0],
                                     [0, 0, 0, 0, 1]])


def test_ridge_recovers_a_planted_linear_map():
    rng = np.random.default_rng(0)
    x = sp.random(300, 12, density=0.4, random_state=1, format="csr")
    w_true, b_true = rng.normal(size=(12, 5)), rng.normal(size=5)
    y = x @ w_true + b_true
    fitted = fit_ridge(x, y, 1e-8)
    np.testing.assert_allclose(fitted.weights, w_true, atol=1e-5)
    np.testing.assert_allclose(fitted.intercept, b_true, atol=1e-5)


def test_ridge_matches_the_dense_augmented_solution_and_shrinks_to_the_mean():
    rng = np.random.default_rng(1)
    x = sp.random(40, 6, density=0.5, random_state=2, format="csr")
    y = rng.normal(size=(40, 3))
    lam = 2.0
    # independent: min |[X 1] beta - y|^2 + lam |w|^2, intercept unpenalised
    a = np.hstack([x.toarray(), np.ones((40, 1))])
    penalty = lam * np.diag([1.0] * 6 + [0.0])
    beta = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    fitted = fit_ridge(x, y, lam)
    np.testing.assert_allclose(fitted.weights, beta[:6], atol=1e-10)
    np.testing.assert_allclose(fitted.intercept, beta[6], atol=1e-10)
    huge = fit_ridge(x, y, 1e12)
    np.testing.assert_allclose(huge.predict(x), np.broadcast_to(y.mean(axis=0), y.shape),
                               atol=1e-5)


@pytest.mark.parametrize(("y", "lam", "match"), [
    (np.zeros((3, 2)), 1.0, "rows"),
    (np.zeros((4, 2)), 0.0, "lambda"),
    (np.full((4, 2), np.nan), 1.0, "NaN"),
])
def test_ridge_refuses_bad_input(y, lam, match):
    with pytest.raises(ValueError, match=match):
        fit_ridge(sp.csr_matrix(np.ones((4, 2))), y, lam)


def test_holdout_cosine_is_near_one_for_an_exact_map_and_none_when_too_small():
    rng = np.random.default_rng(3)
    x = sp.random(200, 8, density=0.5, random_state=4, format="csr")
    y = x @ rng.normal(size=(8, 4)) + rng.normal(size=4)
    out = holdout_cosine(x, y, 1e-8, 0.2, seed=7)
    assert out["holdout_items"] == 40
    assert out["holdout_cosine"] > 0.999
    assert out["holdout_cosine_mean_vector"] < 0.9
    assert holdout_cosine(x[:5], y[:5], 1.0, 0.1, seed=7) is None


def _items(rows):
    """rows: (item_id, title, categories, attributes dict)."""
    return pa.table({
        "item_id": [r[0] for r in rows], "title": [r[1] for r in rows],
        "categories": pa.array([r[2] for r in rows], pa.list_(pa.string())),
        "attributes": pa.array([list(r[3].items()) for r in rows], ATTR),
    })


# Planted: an item's ALS vector is e1 per category A plus e2 per category B.
ITEMS = [
    ("i1", "alpha one", ["A"], {"release_year": "1995"}),
    ("i2", "beta one", ["B"], {}),
    ("i3", "alpha beta", ["A", "B"], {}),
    ("i4", "alpha two", ["A"], {}),
    ("i5", "beta two", ["B"], {"release_year": "1975"}),
    ("cold", "new alpha", ["A"], {}),
    ("blank", None, None, {}),
]
VECTORS = {"i1": [1.0, 0.0], "i2": [0.0, 1.0], "i3": [1.0, 1.0], "i4": [1.0, 0.0],
           "i5": [0.0, 1.0], "gone": [5.0, 5.0]}
CFG = ContentSettings(features=["categories"], min_df=1, ridge_lambda=1e-3,
                      holdout_fraction=0.0)


def _embeddings(vectors=VECTORS):
    return pa.table({"id": list(vectors), "vector": pa.array(list(vectors.values()),
                                                             pa.list_(pa.float32())),
                     "model_version": ["als-1"] * len(vectors)})


def test_transform_gives_every_item_a_vector_and_maps_cold_items_by_content():
    table, stats = transform(_items(ITEMS), _embeddings(), CFG, "2024-01-10", seed=1)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["blank", "cold", "i1", "i2", "i3", "i4", "i5"]  # not "gone"
    assert {i for i, r in rows.items() if r["has_cf"]} == {"i1", "i2", "i3", "i4", "i5"}
    assert stats["warm_items"] == 5 and stats["dim"] == 2 and stats["features"] == 2
    cold = np.array(rows["cold"]["vector"])
    assert cold @ [1, 0] / np.linalg.norm(cold) > 0.95       # points along category A's e1
    np.testing.assert_allclose(rows["cold"]["vector"], rows["i4"]["vector"])  # same content
    # no content at all: the intercept, i.e. the mean-ish vector, finite
    assert np.isfinite(rows["blank"]["vector"]).all()
    assert rows["blank"]["content_vector"] == [0.0, 0.0]
    np.testing.assert_allclose(np.linalg.norm(rows["i3"]["content_vector"]), 1.0, rtol=1e-6)
    assert table.schema.field("vector").type == pa.list_(pa.float32())


def test_transform_refuses_no_overlap_and_ragged_or_nan_vectors():
    with pytest.raises(EmptyInput, match="no catalogue item"):
        transform(_items(ITEMS), _embeddings({"x": [1.0]}), CFG, "2024-01-10", seed=1)
    with pytest.raises(ValueError, match="different lengths"):
        transform(_items(ITEMS), _embeddings({"i1": [1.0], "i2": [1.0, 2.0]}), CFG,
                  "2024-01-10", seed=1)
    with pytest.raises(ValueError, match="NaN"):
        transform(_items(ITEMS), _embeddings({"i1": [float("nan")]}), CFG, "2024-01-10",
                  seed=1)


def test_run_reads_as_of_ds_and_a_rerun_gives_the_same_rows(settings):
    settings = settings.model_copy(update={"content": ContentSettings(min_df=1)})
    lake = Lake(settings)
    items = _items(ITEMS)
    n = items.num_rows
    items = items.append_column("available", pa.array([True] * n)) \
        .append_column("created_at", pa.nulls(n, pa.timestamp("us", tz="UTC"))) \
        .append_column("boost", pa.array([1.0] * n)) \
        .append_column("ds", pa.array(["2024-01-01"] * n))
    lake.overwrite_partitions(SILVER_ITEMS.name, items)
    with pytest.raises(EmptyInput, match="item_embeddings"):
        run(None, settings, "2024-01-10")
    emb = _embeddings()
    write_deltalake(lake.path(ITEM_EMBEDDINGS.name),
                    emb.append_column("ds", pa.array(["2024-01-09"] * emb.num_rows)),
                    partition_by=["ds"])
    report = run(None, settings, "2024-01-10")
    assert report["items_partition"] == "2024-01-01"
    assert report["embeddings_partition"] == "2024-01-09"
    assert report["model_versions"] == ["als-1"]
    first = lake.read_arrow(ITEM_CONTENT.name, ["2024-01-10"]).sort_by("id").to_pylist()
    run(None, settings, "2024-01-10")
    second = lake.read_arrow(ITEM_CONTENT.name, ["2024-01-10"]).sort_by("id").to_pylist()
    assert first == second
    assert [r["id"] for r in first] == ["blank", "cold", "i1", "i2", "i3", "i4", "i5"]


def test_main_reports_missing_inputs_with_exit_2(tmp_path, capsys):

    assert recpipe(["content", "--ds", "2024-01-10", "--lake-root", str(tmp_path / "lake")]) == 2
    assert "silver/items has no snapshot" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        recpipe(["content", "--ds", "yesterday"])
    assert exc.value.code == 2
