"""Beyond-accuracy metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from evaluation import metrics as m


def test_item_counts_counts_distinct_users():
    user_items = sp.csr_matrix(np.array([[1, 0, 2], [3, 0, 0], [0, 0, 1.0]]))
    np.testing.assert_array_equal(m.item_counts(user_items), [2, 0, 2])


def test_catalogue_coverage():
    recs = np.array([[0, 1, 5], [1, 2, -1]])
    assert m.catalogue_coverage(recs, 10, 2) == pytest.approx(3 / 10)  # items 0, 1, 2
    assert m.catalogue_coverage(recs, 10, 3) == pytest.approx(4 / 10)


def test_novelty_is_mean_self_information():
    counts = np.array([4, 2, 1, 0])
    recs = np.array([[0, 1], [2, 3], [-1, -1]])
    # user 0: (log2 1 + log2 2) / 2; user 1: (log2 4 + log2 4) / 2 (count 0 counts as 1)
    expected = (0.5 + 2.0 + 0.0) / 3
    assert m.novelty(recs, counts, 4, 2) == pytest.approx(expected)


def test_popularity_bias_is_mean_share_of_users():
    counts = np.array([4, 2, 1, 0])
    recs = np.array([[0, 1], [2, 3]])
    expected = ((1.0 + 0.5) / 2 + (0.25 + 0.0) / 2) / 2
    assert m.popularity_bias(recs, counts, 4, 2) == pytest.approx(expected)


def test_intra_list_diversity_with_categories():
    categories = np.array([0, 0, 1])
    recs = np.array([[0, 1, 2], [0, 1, -1], [-1, -1, -1]])
    # list 0: pairs (0,1) same, (0,2) and (1,2) differ -> 2/3; list 1: one same pair -> 0
    expected = (2 / 3 + 0.0 + 0.0) / 3
    assert m.intra_list_diversity(recs, categories, 3) == pytest.approx(expected)


@pytest.mark.parametrize("block_users", [1, 1024])
def test_intra_list_diversity_with_vectors(block_users):
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    recs = np.array([[0, 1], [0, 2], [0, 3]])
    expected = (1.0 + (1 - 1 / math.sqrt(2)) + 1.0) / 3  # a zero vector is at distance 1
    got = m.intra_list_diversity(recs, vectors, 2, block_users=block_users)
    assert got == pytest.approx(expected)
    assert m.intra_list_diversity(recs, sp.csr_matrix(vectors), 2) == pytest.approx(expected)


def test_catalog_metrics_refuse_unknown_items():
    with pytest.raises(ValueError, match="covers 2 items"):
        m.novelty(np.array([[0, 5]]), np.array([1, 1]), 3, 2)
