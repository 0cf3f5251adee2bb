"""Exact top-k selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.cf.topk import top_k


def test_best_first_ties_by_id_and_exclusion():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.3], [1.0, 2.0, 3.0, 4.0, 5.0]])
    exclude = sp.csr_matrix(([1, 1], ([0, 1], [1, 4])), shape=(2, 5))
    ids, values = top_k(scores, 3, exclude)
    np.testing.assert_array_equal(ids, [[3, 2, 4], [3, 2, 1]])
    np.testing.assert_allclose(values, [[0.9, 0.5, 0.3], [4.0, 3.0, 2.0]], rtol=1e-6)


def test_matches_a_full_sort():
    rng = np.random.default_rng(3)
    scores = rng.random((20, 50))
    ids, _ = top_k(scores, 7)
    np.testing.assert_array_equal(ids, np.argsort(-scores, axis=1)[:, :7])


def test_pads_when_fewer_items_remain():
    scores = np.array([[0.2, 0.1, 0.3]])
    exclude = sp.csr_matrix(np.array([[1, 0, 0]]))
    ids, values = top_k(scores, 5, exclude)
    np.testing.assert_array_equal(ids, [[2, 1, -1, -1, -1]])
    assert np.isneginf(values[0, 2:]).all()


def test_refuses_nan_and_bad_k():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k(np.array([[1.0]]), 0)
