"""Ranker examples: labels, random negatives, features, the first-night path.

Expected values are worked out by hand from the tables in ``examples_lake``.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from conf import load_settings
from jobs.lake import Lake
from jobs.ranker_features import ItemSide, list_matrix, vector_features
from jobs.tables import EXAMPLES
from tests.training.examples_lake import D1, D2, write_events, write_gold
from training.labels import label_window
from training.negatives import draw_negatives, negative_rng
from training.splits import rows_per_user, user_split

pytestmark = pytest.mark.spark


def make_settings(tmp_path, **ranker):
    return load_settings(overrides={
        "lake_root": str(tmp_path / "lake"), "data_dir": str(tmp_path / "data"),
        "spark": {"shuffle_partitions": 2}, "matrix": {"holdout_days": 2},
        "ranker": {"label_days": 14, "negatives_ratio": 0.0, **ranker},
    })


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """The examples of D2 under two configurations, each built once (Spark is slow)."""
    from training.examples import run

    out = {}
    for name, ranker in (("default", {"negatives_ratio": 1.0}),
                         ("wide", {"positive_users_only": False,
                                   "add_missed_positives": True})):
        settings = make_settings(tmp_path_factory.mktemp(name), **ranker)
        lake = Lake(settings)
        write_events(lake)
        write_gold(lake, D1)
        summary = run(spark, settings, D2)
        out[name] = (settings, summary, lake.read_arrow(EXAMPLES.name, [D2]))
    return out


def rows_by_pair(table: pa.Table) -> dict[tuple[str, str], dict]:
    return {(r["user_id"], r["item_id"]): r for r in table.to_pylist()}


def test_label_window_dates(tmp_path):
    w = label_window(make_settings(tmp_path), D2)
    assert (w.source_ds, w.first, w.last) == (D1, "2024-01-09", "2024-01-22")


# -- labels -----------------------------------------------------------------------------------
def test_labels_weights_and_positive_users_only(built):
    _, summary, got = built["default"]
    rows = rows_by_pair(got)
    # u1: i2 purchased + clicked (weight max(4, 1)); i3 only viewed; i1 untouched.
    # u3: i5 rated 5. u2 has no positive (a rating of 3; a click after the cutoff): dropped.
    assert {k: (r["label"], r["weight"]) for k, r in rows.items()
            if r["origin"] == "candidate"} == {
        ("u1", "i1"): (0.0, 1.0), ("u1", "i2"): (1.0, 4.0), ("u1", "i3"): (0.0, 1.0),
        ("u3", "i5"): (1.0, 1.0)}
    assert set(got.column("source_ds").to_pylist()) == {D1}
    assert (summary["rows"], summary["positives"], summary["users"]) == (6, 2, 2)
    assert summary["by_origin"] == {"candidate": 4, "random": 2}


def test_all_users_and_missed_positives(built):
    _, _, got = built["wide"]
    rows = rows_by_pair(got)
    assert rows[("u2", "i2")]["label"] == 0.0 and rows[("u2", "i4")]["label"] == 0.0
    # u1 clicked i5, which was not among u1's candidates: a missed positive
    missed = rows[("u1", "i5")]
    assert (missed["label"], missed["weight"], missed["origin"]) == (1.0, 1.0, "missed")
    assert missed["retrieval_score"] == 0.0 and missed["retrieval_strategies"] == []
    assert len(rows) == 7


# -- random negatives -------------------------------------------------------------------------
def test_random_negatives_avoid_seen_items_and_repeat(spark, built):
    from training.examples import run

    settings, _, first = built["default"]
    rand = [r for r in first.to_pylist() if r["origin"] == "random"]
    by_user = {r["user_id"]: r["item_id"] for r in rand}
    # one positive each -> one negative each. u1 has candidates i1-i3 and events with i1, i2,
    # i3, i5, i6: only i4 is left. u3 must avoid its candidate i5 and its event item i4.
    assert len(rand) == 2
    assert by_user["u1"] == "i4"
    assert by_user["u3"] in {"i1", "i2", "i3", "i6"}
    assert all(r["label"] == 0.0 and r["weight"] == 1.0 for r in rand)
    run(spark, settings, D2)  # a rerun draws the same items
    again = Lake(settings).read_arrow(EXAMPLES.name, [D2])
    assert sorted(rows_by_pair(again)) == sorted(rows_by_pair(first))


def test_draw_negatives_distinct_excluded_and_seeded():
    catalogue = np.array([f"i{k}" for k in range(100)], dtype=object)
    excluded = {f"i{k}" for k in range(0, 100, 3)} | {"elsewhere"}
    got = draw_negatives(catalogue, excluded, 20, negative_rng(7, "u1", "2024-01-01"))
    assert len(got) == 20 and len(set(got)) == 20
    assert not set(got) & excluded
    assert got == draw_negatives(catalogue, excluded, 20, negative_rng(7, "u1", "2024-01-01"))
    assert got != draw_negatives(catalogue, excluded, 20, negative_rng(7, "u2", "2024-01-01"))
    # mostly excluded: drawn from what is left, and never more than is left
    dense = {f"i{k}" for k in range(95)}
    left = draw_negatives(catalogue, dense, 20, negative_rng(7, "u1", "2024-01-01"))
    assert sorted(left) == [f"i{k}" for k in range(95, 100)]
    assert draw_negatives(catalogue, set(), 0, negative_rng(7, "u1", "d")) == []


# -- features ---------------------------------------------------------------------------------
def test_features_join_correctness(built):
    rows = rows_by_pair(built["default"][2])
    r = rows[("u1", "i2")]
    assert r["retrieval_score"] == 0.9 and r["n_strategies"] == 2.0
    assert r["retrieval_strategies"] == ["ann", "session"]
    assert r["als_dot"] == pytest.approx(0.5)  # [1, 0] . [0.5, 2]
    # history of u1 at D1: i6 (weight 1), i1 (weight 1/2); unit content vectors
    # profile = [1, 0.5, 0]; i2 = [1, 1, 0] / sqrt(2)
    assert r["content_sim"] == pytest.approx(1.5 / (math.sqrt(1.25) * math.sqrt(2)))
    assert r["covis_score"] == pytest.approx(1 * 0.8 + 0.5 * 0.4)
    assert r["popularity"] == 0.5
    assert r["item_age_days"] == 10.0  # 2023-12-31 -> 2024-01-10
    assert r["item_categories"] == ["Comedy"]
    assert r["user_event_count"] == 2.0 and r["item_event_count"] == 0.0
    assert r["user_recency_days"] == pytest.approx(2 + 14 / 24)  # 01-06 10:00 -> 01-09 0:00
    assert (r["user_age_bucket"], r["user_gender"], r["user_occupation"]) == \
        ("b2", "F", "writer")  # age 30: edges 18 and 25 are at or below it
    r = rows[("u1", "i3")]
    assert r["covis_score"] == pytest.approx(0.5 * 1.0)
    assert r["popularity"] == 0.0  # only in a segment's list, not in "all"
    assert r["item_age_days"] is None and r["item_event_count"] == 0.0
    r = rows[("u1", "i1")]
    assert r["item_event_count"] == 2.0  # e1 (u1) and e3 (u2) up to the cutoff
    # u3: no attributes; history i4 only, co-visited with i5 (0.3)
    r = rows[("u3", "i5")]
    assert r["user_age_bucket"] is None and r["user_gender"] is None
    assert r["covis_score"] == pytest.approx(0.3)
    assert r["als_dot"] == pytest.approx(2.0)
    # a random negative: no retrieval, but item and user features
    neg = rows[("u1", "i4")]
    assert (neg["retrieval_score"], neg["n_strategies"]) == (0.0, 0.0)
    assert neg["retrieval_strategies"] == [] and neg["als_dot"] == pytest.approx(0.0)


def test_vector_features_by_hand():
    side = ItemSide(
        item_ids=np.array(["a", "b", "c"], dtype=object),
        als=np.array([[1, 0], [0, 1], [0, 0]], np.float32),
        has_als=np.array([True, True, False]),
        content=np.array([[1, 0], [0, 1], [0, 0]], np.float32),
        covis=sp.csr_matrix(np.array([[0, 2, 0], [1, 0, 0], [0, 0, 0]], np.float32)),
    )
    batch = pa.RecordBatch.from_pydict({
        "user_id": ["u0", "u1", "u2", "u3"],
        "item_id": ["b", "c", "zz", "a"],
        "user_vector": pa.array([[2.0, 3.0], [1.0, 1.0], [1.0, 1.0], None],
                                pa.list_(pa.float32())),
        "history": pa.array([["a", "b"], ["a"], [], None], pa.list_(pa.string())),
    })
    f = vector_features(batch, side)
    np.testing.assert_allclose(f["als_dot"], [3.0, np.nan, np.nan, np.nan])
    # row 0: profile = a + b/2 -> unit [2, 1]/sqrt(5); item b = [0, 1]
    np.testing.assert_allclose(f["content_sim"], [1 / math.sqrt(5), np.nan, np.nan, np.nan],
                               rtol=1e-6)
    # row 0: covis(a -> b) * 1 + covis(b -> b) * 1/2 = 2
    np.testing.assert_allclose(f["covis_score"], [2.0, 0.0, 0.0, 0.0])


def test_a_users_rows_share_one_user_side_and_long_histories_are_cut():
    from jobs.ranker_features import HISTORY_ITEMS

    n = HISTORY_ITEMS + 5
    ids = np.array([f"i{j:02d}" for j in range(n)], dtype=object)
    side = ItemSide(item_ids=ids, als=np.eye(n, 4, dtype=np.float32),
                    has_als=np.ones(n, bool), content=np.eye(n, 4, dtype=np.float32),
                    covis=sp.csr_matrix(np.eye(n, dtype=np.float32)))
    # the most recent item is unknown: it takes a slot of the first HISTORY_ITEMS, then
    # is dropped, so i00 has weight 1 and the items past the cut count for nothing
    history = ["gone", *ids[: n - 1].tolist()]
    batch = pa.RecordBatch.from_pydict({
        "user_id": ["u", "v", "u", "u"],
        "item_id": ["i00", "i00", "i01", f"i{HISTORY_ITEMS:02d}"],
        "user_vector": pa.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]],
                                pa.list_(pa.float32())),
        "history": pa.array([history, None, history, history], pa.list_(pa.string())),
    })
    f = vector_features(batch, side)
    np.testing.assert_allclose(f["als_dot"], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(f["covis_score"], [1.0, 0.0, 0.5, 0.0])
    assert f["content_sim"][0] > f["content_sim"][2] > 0 and np.isnan(f["content_sim"][1])


def test_list_matrix_marks_rows_of_the_wrong_length():
    values = pa.array([[1.0, 2.0], None, [3.0], [4.0, 5.0]], pa.list_(pa.float32()))
    matrix, ok = list_matrix(values, 2)
    assert ok.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(matrix, [[1, 2], [0, 0], [0, 0], [4, 5]])


# -- the first nights -------------------------------------------------------------------------
def test_no_previous_candidates_skips(spark, tmp_path, capsys):
    from training.cli import main
    from training.examples import run

    settings = make_settings(tmp_path)
    write_events(Lake(settings))  # events, but no candidates of D1 yet
    summary = run(spark, settings, D2)
    assert summary["skipped"] == f"no candidates for {D1}"
    assert not Lake(settings).exists(EXAMPLES.name)
    args = ["--lake-root", str(tmp_path / "lake")]
    assert main(["train", "--ds", D2, "--no-mlflow", *args]) == 0
    assert "no ranker examples" in capsys.readouterr().out


def test_user_split_is_disjoint_and_seeded():
    table = pa.table({"user_id": [f"u{k % 10}" for k in range(100)], "x": range(100)})
    users, rows = rows_per_user(table.to_batches(max_chunksize=7))
    assert users.tolist() == [f"u{k}" for k in range(10)] and rows.tolist() == [10] * 10
    train, valid = user_split(users, rows, 0.2, seed=3)
    assert len(valid) == 2 and len(train) == 8 and not set(valid) & set(train)
    again = user_split(users, rows, 0.2, seed=3)[1]
    assert list(again) == list(valid)
    assert list(user_split(users, rows, 0.2, seed=4)[1]) != list(valid)
    with pytest.raises(ValueError, match="validation fraction"):
        user_split(users, rows, 1.0, seed=3)


def test_the_example_budget_keeps_whole_users_and_the_same_validation_users():
    rng = np.random.default_rng(5)
    users = np.array([f"u{i:04d}" for i in range(1000)], dtype=object)
    rows = rng.integers(1, 50, len(users))
    row_of = dict(zip(users, rows, strict=True))
    full_train, full_valid = user_split(users, rows, 0.2, seed=9, max_valid=2_000)
    small_train, small_valid = user_split(users, rows, 0.2, seed=9, max_train=3_000,
                                          max_valid=2_000)
    assert list(small_valid) == list(full_valid)  # the same held-out users
    assert 3_000 - 50 < sum(row_of[u] for u in small_train) <= 3_000
    assert sum(row_of[u] for u in small_valid) <= 2_000
    assert set(small_train) < set(full_train) and not set(full_train) & set(full_valid)
    # one user larger than the budget still trains on that user
    one, _ = user_split(users, rows, 0.2, seed=9, max_train=1)
    assert len(one) == 1


def test_a_window_builds_examples_for_the_share_of_users_the_budget_reads(spark):
    from conf.ranker import RankerSettings
    from training.examples import example_user_share, sampled_users

    positives = spark.createDataFrame([(f"u{k}", f"i{k % 7}") for k in range(2000)] * 2,
                                      "user_id string, item_id string")
    cfg = RankerSettings(max_train_examples=40_000, max_valid_examples=10_000)
    assert example_user_share(positives, cfg, per_user=100) == pytest.approx(0.25)
    assert example_user_share(positives, cfg, per_user=10) == 1.0
    assert example_user_share(positives, RankerSettings(max_train_examples=None), 100) == 1.0
    users = positives.select("user_id").distinct()
    kept = {r[0] for r in users.where(sampled_users(0.25, 1, "2024-06-30")).collect()}
    assert 400 <= len(kept) <= 600
    again = {r[0] for r in users.where(sampled_users(0.25, 1, "2024-06-30")).collect()}
    other = {r[0] for r in users.where(sampled_users(0.25, 1, "2024-07-14")).collect()}
    assert kept == again and kept != other


def test_a_pair_the_user_said_no_to_is_not_a_positive_label(spark):
    from conf.ranker import RankerSettings
    from training.labels import positive_pairs

    rows = [("u1", "a", "click", None), ("u1", "a", "purchase", None),
            ("u1", "a", "hide", None), ("u1", "b", "click", None),
            ("u2", "a", "click", None), ("u2", "c", "dislike", None),
            ("u2", "d", "add_to_cart", None), ("u2", "d", "not_interested", None)]
    events = spark.createDataFrame(rows, "user_id string, item_id string, event_type string, "
                                         "value double")
    got = {(r.user_id, r.item_id) for r in positive_pairs(events, RankerSettings()).collect()}
    assert got == {("u1", "b"), ("u2", "a")}
