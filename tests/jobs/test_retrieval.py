"""Candidate retrieval on data whose right answers are known in advance."""

import numpy as np
import pytest
import scipy.sparse as sp

from conf.recs import CandidateSettings
from jobs.retrieval import RetrievalContext, UserBlock, merge, recency_weights, retrieve

# Checkerboard: items 0-3 form taste A (vector e0), items 4-7 taste B (vector e1).
ITEMS = np.array([f"i{j}" for j in range(8)], dtype=object)
VEC = np.zeros((8, 2), np.float32)
VEC[:4, 0] = [1.0, 0.9, 0.8, 0.7]
VEC[4:, 1] = [1.0, 0.9, 0.8, 0.7]


def _ctx(neighbours=None, popular=None):
    content = np.zeros((8, 2), np.float32)
    content[:4, 0] = 1.0
    content[4:, 1] = 1.0
    return RetrievalContext(
        item_ids=ITEMS, item_vectors=VEC, content=content,
        neighbours=neighbours if neighbours is not None else sp.csr_matrix((8, 8)),
        popular=popular or {"all": (np.array([7, 6, 0]), np.array([3.0, 2.0, 1.0]))})


def _cfg(**per):
    strategies = {"ann": 0, "content": 0, "session": 0, "popular": 0} | per
    return CandidateSettings(per_strategy=strategies, per_user=100)


def _rows(table, user):
    return [r for r in table.to_pylist() if r["user_id"] == user]


def test_ann_finds_the_users_block_and_respects_exclusions():
    block = UserBlock(user_ids=["a", "b"], vectors=np.array([[1, 0], [0, 1]], np.float32),
                      history=[np.array([], np.int64)] * 2,
                      excluded=[np.array([0]), np.array([], np.int64)], segments=["all"] * 2)
    out = retrieve(_ctx(), block, _cfg(ann=3))
    assert [r["item_id"] for r in _rows(out, "a")] == ["i1", "i2", "i3"]
    assert [r["item_id"] for r in _rows(out, "b")] == ["i4", "i5", "i6"]
    assert all(r["sources"] == ["ann"] for r in out.to_pylist())
    assert _rows(out, "a")[0]["ann_score"] == pytest.approx(0.9)


def test_user_without_vector_or_history_gets_popular_only():
    block = UserBlock(user_ids=["cold"], vectors=np.full((1, 2), np.nan, np.float32),
                      history=[np.array([], np.int64)], excluded=[np.array([], np.int64)],
                      segments=["unknown-segment"])
    out = retrieve(_ctx(), block, _cfg(ann=3, content=3, session=3, popular=3))
    assert [r["item_id"] for r in out.to_pylist()] == ["i7", "i6", "i0"]
    assert {tuple(r["sources"]) for r in out.to_pylist()} == {("popular",)}


def test_segment_popularity_is_used_when_known():
    pop = {"all": (np.array([7]), np.array([1.0])), "young": (np.array([2]), np.array([1.0]))}
    block = UserBlock(user_ids=["y"], vectors=np.full((1, 2), np.nan, np.float32),
                      history=[np.array([], np.int64)], excluded=[np.array([], np.int64)],
                      segments=["young"])
    out = retrieve(_ctx(popular=pop), block, _cfg(popular=3))
    assert [r["item_id"] for r in out.to_pylist()] == ["i2"]


def test_session_and_content_follow_recent_items():
    # co-visitation: i4 -> i5 (0.9), i0 -> i1 (0.5)
    nb = sp.csr_matrix(([0.9, 0.5], ([4, 0], [5, 1])), shape=(8, 8))
    block = UserBlock(user_ids=["s"], vectors=np.full((1, 2), np.nan, np.float32),
                      history=[np.array([4, 0])],  # most recent: i4
                      excluded=[np.array([4, 0])], segments=["all"])
    out = retrieve(_ctx(neighbours=nb), block, _cfg(session=2, content=2))
    rows = {r["item_id"]: r for r in out.to_pylist()}
    # session: i5 = 0.9 * 1 (recency 1), i1 = 0.5 * 1/2
    assert rows["i5"]["session_score"] == pytest.approx(0.9)
    assert rows["i1"]["session_score"] == pytest.approx(0.25)
    # content profile weighs i4 (taste B) twice as much as i0: B items come first
    content = sorted((r for r in out.to_pylist() if r["content_score"] is not None),
                     key=lambda r: -r["content_score"])
    assert [r["item_id"] for r in content] == ["i5", "i6"]
    assert "i4" not in rows and "i0" not in rows


def test_merge_deduplicates_and_blends_by_rank():
    cfg = CandidateSettings(per_strategy={"ann": 2, "content": 0, "session": 0,
                                          "popular": 2},
                            blend_weights={"ann": 1.0, "popular": 0.5}, per_user=3)
    parts = [("ann", np.array([0, 0]), np.array([1, 2]), np.array([0.9, 0.8]),
              np.array([1.0, 0.5])),
             ("popular", np.array([0, 0]), np.array([2, 3]), np.array([5.0, 4.0]),
              np.array([1.0, 0.5]))]
    out = merge(["u"], ITEMS, parts, cfg).to_pylist()
    # blends: i1 = 1.0, i2 = 0.5 + 0.5 = 1.0, i3 = 0.25; ties by item id
    assert [(r["item_id"], r["score"], r["rank"]) for r in out] == [
        ("i1", 1.0, 1), ("i2", 1.0, 2), ("i3", 0.25, 3)]
    assert out[1]["sources"] == ["ann", "popular"]
    assert out[1]["ann_score"] == pytest.approx(0.8) and out[1]["popular_score"] == 5.0
    assert out[0]["popular_score"] is None


def test_recency_weights():
    assert recency_weights(3).tolist() == pytest.approx([1.0, 0.5, 1 / 3])


def test_list_rows_keeps_order_and_drops_unknown_ids():
    import pyarrow as pa

    from jobs.candidates import list_rows

    lists = pa.array([["b", "zz", "a"], None, [], ["c", "c"]], pa.list_(pa.string()))
    got = list_rows(lists, pa.array(["a", "b", "c"]))
    assert [g.tolist() for g in got] == [[1, 0], [], [], [2, 2]]
    assert all(g.dtype == np.int64 for g in got)
