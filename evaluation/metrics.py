"""Top-k ranking metrics, each written once, vectorised over users.

Shapes: U users, K list length, I items. ``recs`` is an int array (U, K) of item ids, best
first, padded at the end with -1. ``truth`` is a CSR matrix (U, I) whose stored non-zero
entries are the relevant items (values are the gains of graded NDCG), or a padded int array
(U, T) of relevant ids.

One kernel, :func:`hit_gains`, finds which recommended items are relevant; every ranking
metric derives from its (U, k) gain matrix in :func:`ranking_metrics_per_user`. The named
functions (:func:`ndcg_at_k`, :func:`recall_at_k`, ...) are one-line wrappers. Beside them:
the ranker's classification metrics (:func:`auc`, :func:`log_loss`, :func:`ctr_metrics`) and
the recall of an approximate neighbour search against the exact one (:func:`ann_recall`),
used by training and by the FAISS index's tuning.

Conventions:
    - NDCG@k: DCG of the list's first k gains over the ideal DCG of the TRUTH's k best gains,
      discount ``1 / log2(rank + 1)`` (rank from 1). Binary gain by default; ``graded=True``
      uses the truth values.
    - recall@k = hits / |truth|; recall_capped@k = hits / min(|truth|, k).
    - precision@k = hits / k, also when the list holds fewer than k items.
    - MAP@k: sum of precision@j at each hit j <= k, over min(|truth|, k).
    - MRR: 1 / rank of the first hit within k (0 without a hit); hit rate: any hit within k.
    - AUC: the probability that a random positive scores above a random negative, ties
      counted half (the area under the ROC curve); NaN when one class is absent.
    - log loss: mean binary cross-entropy (natural log), probabilities clipped to
      [1e-7, 1 - 1e-7].
    - ANN recall: per query, the share of the exact top-k found by the approximate search.
    - A user with an empty truth gets NaN for every metric and is left out of the means, with
      an :class:`~evaluation.metrics_input.EmptyTruthWarning`. An empty (all -1) list scores
      0. A k above K uses the whole list (the missing ranks are misses).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from evaluation.metrics_catalog import (
    catalogue_coverage,
    intra_list_diversity,
    item_counts,
    novelty,
    popularity_bias,
)
from evaluation.metrics_input import (
    PAD,
    EmptyTruthWarning,
    check_k,
    check_recs,
    check_truth,
    nan_mean,
    padded_to_csr,
    warn_empty_truth,
)

__all__ = [
    "EmptyTruthWarning",
    "ann_recall",
    "auc",
    "ctr_metrics",
    "log_loss",
    "RANKING_METRICS",
    "catalogue_coverage",
    "hit_gains",
    "hit_rate_at_k",
    "intra_list_diversity",
    "item_counts",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "padded_to_csr",
    "popularity_bias",
    "precision_at_k",
    "ranking_metrics",
    "ranking_metrics_per_user",
    "recall_at_k",
    "recall_capped_at_k",
]

RANKING_METRICS = ("ndcg", "recall", "recall_capped", "precision", "map", "mrr", "hit_rate")
"""Names of the metrics :func:`ranking_metrics` returns, in order."""

Truth = sp.spmatrix | np.ndarray
_EPS = 1e-7


def discounts(n: int) -> np.ndarray:
    """DCG discounts ``1 / log2(rank + 1)`` for ranks 1..n, shape (n,)."""
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def hit_gains(recs: np.ndarray, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """The kernel: gain of each of the first k recommended items (0 for a miss or padding).

    One sorted search over the keys ``user * I + item`` of the truth: no loop over users.

    Args:
        recs: checked int64 lists (U, K), padded with -1.
        truth: canonical CSR (U, I): sorted indices, no explicit zeros.
        k: cutoff; the first ``min(k, K)`` columns are looked up.

    Returns:
        float64 (U, min(k, K)): the truth value of each recommended item, 0 where not relevant.
    """
    top = recs[:, :k]
    n_users, width = top.shape
    n_items = truth.shape[1]
    keys = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr)) * n_items
    keys += truth.indices
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
    gains = np.zeros((n_users, width), dtype=np.float64)
    if keys.size == 0 or top.size == 0:
        return gains
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    hit = (top != PAD) & (keys[pos] == query)
    gains[hit] = truth.data[pos[hit]]
    return gains


def ideal_dcg(truth: sp.csr_matrix, k: int, graded: bool) -> np.ndarray:
    """DCG of the best possible list of length k, from the truth alone; shape (U,)."""
    n_users = truth.shape[0]
    rows = np.repeat(np.arange(n_users), np.diff(truth.indptr))
    gains = truth.data if graded else np.ones_like(truth.data)
    order = np.lexsort((-gains, rows))  # by user, best gain first
    rank = np.arange(order.size) - truth.indptr[rows[order]]
    keep = rank < k
    weights = gains[order][keep] * discounts(k)[rank[keep]]
    return np.bincount(rows[order][keep], weights=weights, minlength=n_users)


def ranking_metrics_per_user(
    recs: np.ndarray, truth: Truth, k: int, graded: bool = False
) -> dict[str, np.ndarray]:
    """Every ranking metric at k for every user, from one hit matrix.

    Args:
        recs: int array (U, K) of item ids, best first, padded with -1.
        truth: CSR (U, I) of relevant items (values = graded gains) or padded ids (U, T).
        k: cutoff (may exceed K).
        graded: NDCG uses the truth values as gains instead of 1.

    Returns:
        ``{name: float64 (U,)}`` for each name in :data:`RANKING_METRICS`; NaN for users
        with an empty truth.

    Raises:
        TypeError, ValueError: malformed inputs (see :mod:`evaluation.metrics_input`).
    """
    recs = check_recs(recs)
    k = check_k(k, recs)
    truth = check_truth(truth, recs)
    gains = hit_gains(recs, truth, k)
    rel = gains > 0
    n_rel = np.diff(truth.indptr).astype(np.float64)
    hits = rel.sum(axis=1, dtype=np.float64)
    capped = np.minimum(n_rel, k)
    width = gains.shape[1]
    dcg = (gains if graded else rel) @ discounts(width)
    cum_precision = np.cumsum(rel, axis=1) / np.arange(1, width + 1)
    first = np.argmax(rel, axis=1) if width else np.zeros(rel.shape[0], dtype=np.int64)
    any_hit = rel.any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "ndcg": dcg / ideal_dcg(truth, k, graded),
            "recall": hits / n_rel,
            "recall_capped": hits / capped,
            "precision": hits / k,
            "map": (cum_precision * rel).sum(axis=1) / capped,
            "mrr": np.where(any_hit, 1.0 / (first + 1.0), 0.0),
            "hit_rate": any_hit.astype(np.float64),
        }
    empty = n_rel == 0
    for values in out.values():
        values[empty] = np.nan
    return out


def ranking_metrics(
    recs: np.ndarray, truth: Truth, k: int, graded: bool = False
) -> dict[str, float]:
    """Means over users of :func:`ranking_metrics_per_user` (empty-truth users left out).

    Returns:
        ``{name: mean}`` for each name in :data:`RANKING_METRICS`.
    """
    per_user = ranking_metrics_per_user(recs, truth, k, graded)
    n_empty = int(np.isnan(per_user["recall"]).sum())
    warn_empty_truth(n_empty, per_user["recall"].shape[0], f"metrics@{k}")
    return {name: nan_mean(values) for name, values in per_user.items()}


def ndcg_at_k(recs: np.ndarray, truth: Truth, k: int, graded: bool = False) -> float:
    """Mean NDCG@k, ideal DCG from the truth (binary gains unless ``graded``)."""
    return ranking_metrics(recs, truth, k, graded)["ndcg"]


def recall_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean recall@k = hits in the first k / |truth|."""
    return ranking_metrics(recs, truth, k)["recall"]


def recall_capped_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean capped recall@k = hits in the first k / min(|truth|, k)."""
    return ranking_metrics(recs, truth, k)["recall_capped"]


def precision_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean precision@k = hits in the first k / k."""
    return ranking_metrics(recs, truth, k)["precision"]


def map_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean average precision at k (normalised by min(|truth|, k))."""
    return ranking_metrics(recs, truth, k)["map"]


def mrr_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Mean reciprocal rank of the first hit within k (0 for a user without a hit)."""
    return ranking_metrics(recs, truth, k)["mrr"]


def hit_rate_at_k(recs: np.ndarray, truth: Truth, k: int) -> float:
    """Share of users with at least one hit within k."""
    return ranking_metrics(recs, truth, k)["hit_rate"]


# -- classification: the ranker's predictions -----------------------------------------------
def _check_predictions(probs: np.ndarray, labels: np.ndarray) -> None:
    if probs.shape != labels.shape or probs.ndim != 1:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must be equal (N,)")
    if len(probs) == 0:
        raise ValueError("cannot compute metrics of 0 predictions")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of N scored examples (ties between a positive and a negative
    count half), from the ranks of the scores (Mann-Whitney U); NaN when one class is absent.

    Raises:
        ValueError: the arrays differ in shape, are not (N,), or are empty.
    """
    _check_predictions(scores, labels)
    y = labels.astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # average rank of each run of equal scores (1-based)
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log) of N probabilities, clipped to
    [1e-7, 1 - 1e-7]."""
    _check_predictions(probs, labels)
    p = np.clip(probs.astype(np.float64), _EPS, 1 - _EPS)
    y = labels.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def ctr_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC and log loss of N predicted probabilities against 0/1 labels.

    Returns:
        ``{"auc", "logloss", "n", "positive_rate"}``; AUC is NaN when one class is absent.

    Raises:
        ValueError: the arrays differ in length or are empty.
    """
    _check_predictions(probs, labels)
    return {"auc": auc(probs, labels), "logloss": log_loss(probs, labels),
            "n": float(len(probs)), "positive_rate": float(labels.astype(np.float64).mean())}


# -- approximate search -----------------------------------------------------------------------
def ann_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true neighbours that were found (ANN recall@k).

    Args:
        found: (Q, k) ids returned by the approximate search (-1 for none).
        truth: (Q, k) ids of the exact top-k (-1 for none); rows hold no repeated id.

    Returns:
        The mean over queries of ``|found ∩ truth| / |truth|`` (-1 ignored); NaN if Q is 0.
    """
    if found.shape != truth.shape:
        raise ValueError(f"found {found.shape} and truth {truth.shape} differ in shape")
    if found.shape[0] == 0:
        return float("nan")
    both = np.sort(np.concatenate([found, truth], axis=1), axis=1)
    hits = np.count_nonzero((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0), axis=1)
    size = np.maximum(np.count_nonzero(truth >= 0, axis=1), 1)
    return float(np.mean(hits / size))
