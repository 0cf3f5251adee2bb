"""Ranking metrics against values computed by hand or by a plain per-user loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from evaluation import metrics as m
from evaluation.metrics_input import EmptyTruthWarning


def truth_csr(rows: list[dict[int, float]], n_items: int = 10) -> sp.csr_matrix:
    """CSR truth from one {item: gain} dict per user."""
    r = [u for u, row in enumerate(rows) for _ in row]
    c = [i for row in rows for i in row]
    v = [g for row in rows for g in row.values()]
    return sp.csr_matrix((v, (r, c)), shape=(len(rows), n_items))


def test_binary_ndcg_hit_miss_hit_with_two_relevant():
    recs = np.array([[1, 2, 3]])
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(recs, truth_csr([{1: 1, 3: 1}]), 3) == pytest.approx(expected)


def test_ideal_dcg_comes_from_the_truth_not_the_list():
    # one hit at rank 2, three relevant items: IDCG counts two ideal ranks at k=2
    recs = np.array([[5, 1]])
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(recs, truth_csr([{1: 1, 2: 1, 3: 1}]), 2) == pytest.approx(expected)


def test_graded_ndcg_uses_truth_values_as_gains():
    truth = truth_csr([{0: 3.0, 1: 2.0, 2: 1.0}])
    recs = np.array([[2, 0]])
    expected = (1 + 3 / math.log2(3)) / (3 + 2 / math.log2(3))
    assert m.ndcg_at_k(recs, truth, 2, graded=True) == pytest.approx(expected)
    binary = (1 + 1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(recs, truth, 2) == pytest.approx(binary)


def test_recall_capped_recall_and_precision():
    truth = truth_csr([{0: 1, 1: 1, 2: 1, 3: 1, 4: 1}])
    recs = np.array([[0, 9]])
    assert m.recall_at_k(recs, truth, 2) == pytest.approx(1 / 5)
    assert m.recall_capped_at_k(recs, truth, 2) == pytest.approx(1 / 2)
    assert m.precision_at_k(recs, truth, 2) == pytest.approx(1 / 2)


def test_map_mrr_hit_rate_by_hand():
    truth = truth_csr([{1: 1, 3: 1}, {7: 1}, {8: 1}])
    recs = np.array([[1, 2, 3], [5, 6, 7], [0, 1, 2]])
    per_user = m.ranking_metrics_per_user(recs, truth, 3)
    np.testing.assert_allclose(per_user["map"], [(1 / 1 + 2 / 3) / 2, (1 / 3) / 1, 0.0])
    np.testing.assert_allclose(per_user["mrr"], [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(per_user["hit_rate"], [1.0, 1.0, 0.0])
    assert m.mrr_at_k(recs, truth, 2) == pytest.approx(1 / 3)  # user 2's hit is past k


def test_empty_truth_is_nan_and_left_out_with_a_warning():
    truth = truth_csr([{1: 1}, {}])
    recs = np.array([[1, 2], [3, 4]])
    per_user = m.ranking_metrics_per_user(recs, truth, 2)
    assert per_user["ndcg"][0] == pytest.approx(1.0)
    assert all(np.isnan(v[1]) for v in per_user.values())
    with pytest.warns(EmptyTruthWarning, match="1 of 2 users"):
        assert m.ndcg_at_k(recs, truth, 2) == pytest.approx(1.0)


def test_empty_list_scores_zero():
    truth = truth_csr([{1: 1}, {2: 1}])
    recs = np.array([[-1, -1], [2, -1]])
    per_user = m.ranking_metrics_per_user(recs, truth, 2)
    for name in m.RANKING_METRICS:
        assert per_user[name][0] == 0.0
    assert per_user["ndcg"][1] == pytest.approx(1.0)


def test_k_larger_than_the_list():
    truth = truth_csr([{1: 1, 2: 1, 3: 1}])
    recs = np.array([[1, 2]])
    values = m.ranking_metrics(recs, truth, 5)
    assert values["precision"] == pytest.approx(2 / 5)
    assert values["recall"] == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / ideal)


def test_padded_truth_gives_the_same_figures_as_csr():
    recs = np.array([[1, 2, 3], [4, 0, -1]])
    padded = np.array([[3, 1, -1], [0, -1, -1]])
    as_csr = truth_csr([{1: 1, 3: 1}, {0: 1}])
    assert m.ranking_metrics(recs, padded, 3) == pytest.approx(m.ranking_metrics(recs, as_csr, 3))


def _loop_reference(recs: np.ndarray, truth: list[set[int]], k: int) -> dict[str, float]:
    """A plain per-user implementation, written independently of the kernel."""
    out = {"ndcg": [], "recall": [], "precision": [], "map": []}
    for row, rel in zip(recs, truth, strict=True):
        top = [int(i) for i in row[:k] if i >= 0]
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in rel)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
        hits, ap = 0, 0.0
        for r, i in enumerate(top):
            if i in rel:
                hits += 1
                ap += hits / (r + 1)
        out["ndcg"].append(dcg / idcg)
        out["recall"].append(hits / len(rel))
        out["precision"].append(hits / k)
        out["map"].append(ap / min(len(rel), k))
    return {name: float(np.mean(v)) for name, v in out.items()}


def test_vectorised_kernel_matches_a_per_user_loop():
    rng = np.random.default_rng(7)
    n_users, n_items, width = 40, 30, 12
    recs = np.array([rng.permutation(n_items)[:width] for _ in range(n_users)])
    recs[::5, 8:] = -1  # some short lists
    truth = [set(rng.choice(n_items, size=rng.integers(1, 9), replace=False).tolist())
             for _ in range(n_users)]
    csr = truth_csr([dict.fromkeys(t, 1.0) for t in truth], n_items)
    for k in (1, 5, 12, 20):
        got = m.ranking_metrics(recs, csr, k)
        want = _loop_reference(recs, truth, k)
        for name, value in want.items():
            assert got[name] == pytest.approx(value), (name, k)


@pytest.mark.parametrize(
    ("recs", "error"),
    [
        (np.array([[1.0, 2.0]]), TypeError),
        (np.array([1, 2]), ValueError),
        (np.array([[1, 1]]), ValueError),
        (np.array([[1, -2]]), ValueError),
        (np.array([[1, 99]]), ValueError),
        (np.array([[1, 2], [3, 4]]), ValueError),  # two rows, truth has one
    ],
)
def test_malformed_inputs_are_refused(recs, error):
    with pytest.raises(error):
        m.ranking_metrics(recs, truth_csr([{1: 1}]), 2)


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        m.ndcg_at_k(np.array([[1]]), truth_csr([{1: 1}]), 0)


# -- classification and approximate search ---------------------------------------------------
def test_auc_and_log_loss_against_hand_values():
    probs = np.array([0.9, 0.4, 0.6, 0.1])
    labels = np.array([1, 1, 0, 0])
    got = m.ctr_metrics(probs, labels)
    assert got["auc"] == pytest.approx(0.75)  # 3 of the 4 (pos, neg) pairs ordered right
    expected = -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.9)) / 4
    assert got["logloss"] == pytest.approx(expected)
    assert got["positive_rate"] == 0.5 and got["n"] == 4
    assert math.isnan(m.ctr_metrics(probs, np.ones(4))["auc"])


def test_auc_counts_a_tie_between_a_positive_and_a_negative_half():
    # pairs (pos, neg): (0.5, 0.5) tie -> 1/2, (0.5, 0.2) -> 1, (0.9, 0.5) -> 1, (0.9, 0.2) -> 1
    assert m.auc(np.array([0.5, 0.9, 0.5, 0.2]), np.array([1, 1, 0, 0])) == pytest.approx(3.5 / 4)
    # every score equal: no information
    assert m.auc(np.full(6, 0.3), np.array([1, 0, 1, 0, 0, 1])) == pytest.approx(0.5)


def test_auc_matches_torchmetrics_roc_auc_with_many_ties():
    from torch import from_numpy
    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(5)
    probs = rng.integers(0, 20, 2000).astype(np.float32) / 20  # 20 distinct values: many ties
    labels = (rng.random(2000) < probs).astype(np.int64)
    reference = float(binary_auroc(from_numpy(probs), from_numpy(labels)))
    assert m.auc(probs, labels) == pytest.approx(reference, abs=1e-6)


def test_classification_metrics_refuse_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="must be equal"):
        m.auc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="0 predictions"):
        m.log_loss(np.zeros(0), np.zeros(0))


def test_ann_recall_by_hand():
    found = np.array([[1, 2, 3], [4, 5, -1]])
    truth = np.array([[3, 2, 9], [4, 6, 7]])
    assert m.ann_recall(found, truth) == pytest.approx((2 / 3 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="differ in shape"):
        m.ann_recall(found, truth[:, :2])

