"""Score a fitted model against held-out interactions: full ranking, metrics at several k.

Shapes: U users, I items, K the longest cutoff. ``truth`` and ``exclude`` are CSR (U, I) over
the same users and items as the model's training matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from algorithms.cf import Recommender
from evaluation.intervals import bootstrap_interval
from evaluation.metrics import (
    RANKING_METRICS,
    catalogue_coverage,
    nan_mean,
    novelty,
    popularity_bias,
    ranking_metrics_per_user,
)

INTERVAL_METRICS = ("ndcg@10", "recall@100")
"""Metrics that get a 95% bootstrap interval over users (``<key>_low``, ``<key>_high``)."""


def metric_key(name: str, k: int) -> str:
    """Report key of a metric at a cutoff, e.g. ``ndcg@10``."""
    return f"{name}@{k}"


def rank_users(
    model: Recommender,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix,
    k: int,
    block_users: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k lists of the users who have held-out items, over every item not excluded.

    Returns:
        ``(users (E,), recs (E, k))`` for the E users with at least one truth item.
    """
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    recs, _ = model.recommend(users, k, exclude[users], block_size=block_users)
    return users, recs


def evaluate(
    model: Recommender,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: list[int],
    block_users: int,
    train_counts: np.ndarray | None = None,
    interval_seed: int | None = None,
) -> dict[str, float]:
    """Ranking metrics of ``model`` at every k, over users with a non-empty truth.

    Args:
        model: fitted on a matrix with the same users and items as ``truth``.
        truth: held-out interactions (U, I); every stored entry is relevant.
        exclude: items not to rank per user (U, I), e.g. the training interactions.
        ks: cutoffs; lists are computed once at ``max(ks)``.
        block_users: users scored at once.
        train_counts: (I,) users per item in the fitting data; when given, adds
            ``coverage``, ``novelty`` and ``popularity_bias`` at the smallest k.
        interval_seed: when given, each metric of :data:`INTERVAL_METRICS` that is computed
            gets its 95% bootstrap interval over users, drawn with this seed.

    Returns:
        ``{"<metric>@<k>": value}`` for every metric of
        :data:`~evaluation.metrics.RANKING_METRICS` and k, plus ``users`` evaluated.
    """
    users, recs = rank_users(model, truth, exclude, max(ks), block_users)
    held_out = truth[users]
    out: dict[str, float] = {"users": float(users.size)}
    for k in sorted(ks):
        per_user = ranking_metrics_per_user(recs, held_out, k)
        for name in RANKING_METRICS:
            key = metric_key(name, k)
            out[key] = nan_mean(per_user[name])
            if interval_seed is not None and key in INTERVAL_METRICS:
                out[f"{key}_low"], out[f"{key}_high"] = bootstrap_interval(
                    per_user[name], interval_seed)
    if train_counts is not None:
        k = min(ks)
        n_users = truth.shape[0]
        out[metric_key("coverage", k)] = catalogue_coverage(recs, truth.shape[1], k)
        out[metric_key("novelty", k)] = novelty(recs, train_counts, n_users, k)
        out[metric_key("popularity_bias", k)] = popularity_bias(recs, train_counts, n_users, k)
    return out
