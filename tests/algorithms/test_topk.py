"""Exact blocked top-k against a naive full sort (integer-valued data: exact float32 sums)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.topk import topk_inner_product


def full_sort(queries, items, k, exclude=None):
    """Reference: score everything in float64, sort each row fully (score desc, id asc)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    if exclude is not None:
        scores[exclude.toarray() != 0] = -np.inf
    n = items.shape[0]
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    values = np.full((len(queries), k), -np.inf)
    for row in range(len(queries)):
        order = np.lexsort((np.arange(n), -scores[row]))[: min(k, n)]
        keep = order[np.isfinite(scores[row, order])]
        ids[row, : len(keep)] = keep
        values[row, : len(keep)] = scores[row, keep]
    return ids, values


@pytest.fixture
def small_ints():
    rng = np.random.default_rng(7)
    queries = rng.integers(-2, 3, size=(23, 4)).astype(np.float32)
    items = rng.integers(-2, 3, size=(1003, 4)).astype(np.float32)  # 1003 = 125 * 8 + 3
    return queries, items


def test_hand_example_breaks_ties_by_lower_id():
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    items = np.array([[1, 1], [2, 0], [0, 3], [1, 1]], dtype=np.float32)
    # Row 0 scores [1, 2, 0, 1]; row 1 scores [1, 0, 3, 1].
    ids, scores = topk_inner_product(queries, items, k=3)
    assert ids.tolist() == [[1, 0, 3], [2, 0, 3]]
    assert scores.tolist() == [[2, 1, 1], [3, 1, 1]]
    assert ids.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("group", [None, 1, 3, 8])
@pytest.mark.parametrize(("threads", "block_rows"), [(1, 1024), (2, 5), (3, 4)])
def test_matches_full_sort_with_many_ties(small_ints, k, group, threads, block_rows):
    queries, items = small_ints
    ids, scores = topk_inner_product(
        queries, items, k, block_rows=block_rows, threads=threads, group=group
    )
    want_ids, want_scores = full_sort(queries, items, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.parametrize("group", [None, 1, 8])
def test_exclusions_are_never_returned(small_ints, group):
    queries, items = small_ints
    exclude = sp.random(23, 1003, density=0.3, format="csr", random_state=3)
    ids, scores = topk_inner_product(queries, items, 5, exclude=exclude, group=group, threads=2,
                                     block_rows=6)
    want_ids, want_scores = full_sort(queries, items, 5, exclude)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    dense = exclude.toarray() != 0
    assert not any(dense[row, ids[row]].any() for row in range(23))


def test_pads_rows_left_with_fewer_than_k_items():
    queries = np.array([[1, 0], [1, 0]], dtype=np.float32)
    items = np.array([[3, 0], [1, 0], [2, 0], [0, 0]], dtype=np.float32)
    exclude = sp.csr_array(np.array([[1, 0, 0, 0], [1, 1, 0, 1]]))
    ids, scores = topk_inner_product(queries, items, 3, exclude=exclude)
    assert ids.tolist() == [[2, 1, 3], [2, -1, -1]]
    assert scores.tolist() == [[2, 1, 0], [2, -np.inf, -np.inf]]


def test_k_above_item_count_pads():
    items = np.array([[1.0], [3.0]], dtype=np.float32)
    ids, scores = topk_inner_product(np.array([[1.0]], dtype=np.float32), items, 4)
    assert ids.tolist() == [[1, 0, -1, -1]]
    assert scores.tolist() == [[3, 1, -np.inf, -np.inf]]


def test_large_group_path_on_float_data():
    """Many items per group and distinct float scores: ids equal a float64 full sort."""
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((9, 8)).astype(np.float32)
    items = rng.standard_normal((5000, 8)).astype(np.float32)
    ids, scores = topk_inner_product(queries, items, 10, group=16, threads=2, block_rows=4)
    want_ids, want_scores = full_sort(queries, items, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("queries", "items", "k", "message"),
    [
        (np.ones((2, 3)), np.ones((4, 2)), 1, "3 dimensions"),
        (np.ones((2, 2)), np.ones((4, 2)), 0, "k must be"),
        (np.array([[np.nan, 1.0]]), np.ones((4, 2)), 1, "NaN"),
        (np.ones(3), np.ones((4, 3)), 1, "2-D"),
    ],
)
def test_bad_input_names_the_problem(queries, items, k, message):
    with pytest.raises(ValueError, match=message):
        topk_inner_product(queries, items, k)


def test_exclusion_shape_is_checked():
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        topk_inner_product(np.ones((2, 2)), np.ones((4, 2)), 1, exclude=sp.csr_array((2, 5)))
