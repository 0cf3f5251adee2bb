"""Top-k ranking metrics, each written once, vectorised over users.

Shapes: U users, K list length, I items. ``recs`` is an int array (U, K) of item ids, best
first, padded at the end with -1. ``truth`` is a CSR matrix (U, I) whose stored non-zero
entries are the relevant items (values are the gains of graded NDCG), or a padded int array
(U, T) of relevant ids.

One kernel, :func:`hit_gains`, finds which recommended items are relevant; every ranking
metric derives from its (U, k) gain matrix in :func:`ranking_metrics_per_user`. The named
functions (:func:`ndcg_at_k`, :func:`recall_at_k`, ...) are one-line wrappers.

Conventions:
    - NDCG@k: DCG of the list's first k gains over the ideal DCG of the TRUTH's k best gains,
      discount ``1 / log2(rank + 1)`` (rank from 1). Binary gain by default; ``graded=True``
      uses the truth values.
    - recall@k = hits / |truth|; recall_capped@k = hits / min(|truth|, k).
    - precision@k = hits / k, also when the list holds fewer than k items.
    - MAP@k: sum of precision@j at each hit j <= k, over min(|truth|, k).
    - MRR: 1 / rank of the first hit within k (0 without a hit); hit rate: any hit within k.
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
