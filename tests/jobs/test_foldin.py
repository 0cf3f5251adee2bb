"""The hourly fold-in's pure parts: the window, who changed, matrix rows, vectors, ids."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from conf.pipeline import AlsSettings
from jobs.foldin import (
    backfill_lists,
    changed_users,
    fold_vectors,
    foldin_matrix,
    hour_window,
    merge_user_items,
    new_events,
    recent_items,
    release_id,
)
from jobs.tables import TS


def _t(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _events(rows):
    users, items, types, times = zip(*rows, strict=True)
    return pa.table({"event_id": [f"e{i}" for i in range(len(rows))], "user_id": list(users),
                     "item_id": list(items), "event_type": list(types),
                     "ts": pa.array([_t(t) for t in times], TS)})


def test_window_ends_at_the_logical_hour_and_looks_back_whole_days():
    w = hour_window("2024-03-05", 11, lookback_days=30)
    assert w.cutoff == datetime(2024, 3, 5, 11, tzinfo=UTC)
    assert w.first_date == "2024-02-05"  # 30 days ending 2024-03-05, inclusive
    assert hour_window("2024-03-05", 0, lookback_days=1).first_date == "2024-03-05"


@pytest.mark.parametrize("hour", [-1, 24, 1.5, True])
def test_window_refuses_a_bad_hour(hour):
    with pytest.raises(ValueError, match="hour must be an integer 0-23"):
        hour_window("2024-03-05", hour, 30)


def test_new_events_are_unseen_by_the_base_and_before_the_cutoff():
    events = _events([
        ("a", "i1", "click", "2024-03-04T09:00:00"),  # e0: the base had it
        ("b", "i1", "click", "2024-03-01T23:00:00"),  # e1: late arrival for an old date
        ("c", "i2", "view", "2024-03-05T10:59:59"),   # e2
        ("d", "i3", "click", "2024-03-05T11:00:00"),  # e3: at the cutoff, next hour
        ("b", "i4", "purchase", "2024-03-05T09:00:00"),  # e4
    ])
    cutoff = datetime(2024, 3, 5, 11, tzinfo=UTC)
    fresh = new_events(events, ["e0", "x9"], cutoff)
    assert fresh.column("event_id").to_pylist() == ["e1", "e2", "e4"]
    assert changed_users(fresh) == ["b", "c"]
    chunked = pa.chunked_array([["e0"], ["e1"]])
    assert new_events(events, chunked, cutoff).column("event_id").to_pylist() == ["e2", "e4"]


def test_recent_items_are_distinct_most_recent_first():
    fresh = _events([
        ("u", "i1", "click", "2024-03-05T08:00:00"),
        ("u", "i2", "view", "2024-03-05T09:00:00"),
        ("u", "i1", "purchase", "2024-03-05T10:00:00"),
        ("v", "i9", "skip", "2024-03-05T10:00:00"),
    ])
    got = {r["user_id"]: r["recent"] for r in recent_items(fresh).to_pylist()}
    assert got == {"u": ["i1", "i2"], "v": ["i9"]}


def test_foldin_matrix_keeps_only_known_users_and_items_with_vectors():
    matrix = pa.table({"user_id": ["u", "u", "u", "w", "x"],
                       "item_id": ["i1", "i2", "new", "i2", "i1"],
                       "confidence": [2.0, 0.5, 9.0, 1.0, 3.0]})
    m = foldin_matrix(matrix, ["x", "u", "z"], {"i1": 0, "i2": 2}, n_items=3)
    assert m.shape == (3, 3)
    assert m.toarray().tolist() == [[3.0, 0, 0], [2.0, 0, 0.5], [0, 0, 0]]


def test_foldin_matrix_refuses_duplicate_pairs_and_negative_confidence():
    dup = pa.table({"user_id": ["u", "u"], "item_id": ["i1", "i1"], "confidence": [1.0, 2.0]})
    with pytest.raises(ValueError, match="duplicate"):
        foldin_matrix(dup, ["u"], {"i1": 0}, 1)
    neg = pa.table({"user_id": ["u"], "item_id": ["i1"], "confidence": [-1.0]})
    with pytest.raises(ValueError, match="u, i1"):
        foldin_matrix(neg, ["u"], {"i1": 0}, 1)


def _weighted_least_squares(items, confidences, alpha, reg):
    """The implicit-ALS user vector by its definition: minimise over every item
    ``sum_i c_i (p_i - x.y_i)^2 + reg |x|^2`` (c_i = 1 + alpha r_i, p_i = [r_i > 0])."""
    c = 1.0 + alpha * confidences
    p = (confidences > 0).astype(float)
    a = np.vstack([np.sqrt(c)[:, None] * items, np.sqrt(reg) * np.eye(items.shape[1])])
    b = np.concatenate([np.sqrt(c) * p, np.zeros(items.shape[1])])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def test_fold_vectors_solve_the_implicit_als_objective_with_items_fixed():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(6, 3)).astype(np.float32)
    rows = np.array([[2.0, 0, 0, 0.5, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 3.0]])
    als = AlsSettings(alpha=4.0, regularization=0.3)
    vectors, has = fold_vectors(items, sp.csr_matrix(rows), als)
    assert has.tolist() == [True, False, True]
    assert vectors.dtype == np.float32 and vectors.shape == (3, 3)
    for r in (0, 2):
        expected = _weighted_least_squares(items.astype(float), rows[r], 4.0, 0.3)
        assert vectors[r] == pytest.approx(expected, abs=1e-5)
    assert not vectors[1].any()


def test_merge_purchased_adds_new_purchases_once():
    fresh = _events([("u", "i3", "purchase", "2024-03-05T08:00:00"),
                     ("u", "i1", "purchase", "2024-03-05T08:10:00"),
                     ("u", "i4", "click", "2024-03-05T08:20:00"),
                     ("n", "i2", "purchase", "2024-03-05T08:30:00")])
    got = merge_user_items({"u": ["i1"], "k": ["i5"]}, fresh)
    assert got == {"u": ["i1", "i3"], "k": ["i5"], "n": ["i2"]}


def test_release_id_names_the_hour_and_depends_on_the_inputs_only():
    w = hour_window("2024-03-05", 7, 30)
    key = {"seed": 1}
    rid = release_id(w, "base-1", ["e2", "e1"], key)
    assert rid.startswith("2024-03-05T07-") and len(rid) == len("2024-03-05T07-") + 8
    assert release_id(w, "base-1", ["e1", "e2"], key) == rid
    assert release_id(w, "base-1", ["e1", "e2", "e3"], key) != rid
    assert release_id(w, "base-2", ["e1", "e2"], key) != rid
    assert release_id(w, "base-1", ["e1", "e2"], {"seed": 2}) != rid
    assert release_id(hour_window("2024-03-05", 8, 30), "base-1",
                      ["e1", "e2"], key) != rid


def test_backfill_gives_a_user_without_new_rows_the_parent_list_minus_blocked_items():
    lists = pa.table({"user_id": ["a", "a"], "item_id": ["i1", "i2"], "score": [0.9, 0.8],
                      "rank": pa.array([1, 2], pa.int32()),
                      "sources": [["ann"], ["popular"]]})
    previous = {"a": [("i7", 1.0, ("ann",))],
                "b": [("i3", 0.9, ("ann",)), ("i4", 0.7, ()), ("i5", 0.5, ("covis",))],
                "c": [("i4", 0.7, ())]}
    out = backfill_lists(lists, ["a", "b", "c", "d"], previous, {"b": {"i4"}, "c": {"i4"}})
    rows = [(r["user_id"], r["item_id"], r["rank"], r["sources"]) for r in out.to_pylist()]
    assert rows == [("a", "i1", 1, ["ann"]), ("a", "i2", 2, ["popular"]),
                    ("b", "i3", 1, ["ann"]), ("b", "i5", 2, ["covis"])]
    assert backfill_lists(lists, ["a"], previous, {}) is lists


def test_block_lists_grow_with_the_hours_negative_feedback_only():
    fresh = _events([("u", "i3", "hide", "2024-03-05T08:00:00"),
                     ("u", "i4", "click", "2024-03-05T08:20:00"),
                     ("u", "i1", "dislike", "2024-03-05T08:25:00"),
                     ("n", "i2", "not_interested", "2024-03-05T08:30:00")])
    got = merge_user_items({"u": ["i1"]}, fresh, ("hide", "not_interested", "dislike"))
    assert got == {"u": ["i1", "i3"], "n": ["i2"]}
