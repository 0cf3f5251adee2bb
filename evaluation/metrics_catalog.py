"""Beyond-accuracy metrics of recommendation lists: coverage, novelty, diversity, popularity.

Shapes: U users, K list length, I items, D feature dimensions. ``recs`` is an int array
(U, K), best first, padded at the end with -1; only its first k columns are used. These
metrics need no ground truth. A user with an empty list scores 0 and counts in the mean.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from evaluation.metrics_input import PAD, check_k, check_recs


def item_counts(user_items: sp.spmatrix) -> np.ndarray:
    """Number of distinct users who interacted with each item.

    Args:
        user_items: sparse (U, I) interactions; any stored non-zero counts once.

    Returns:
        int64 (I,).
    """
    csc = sp.csc_matrix(user_items)
    csc.eliminate_zeros()
    return np.diff(csc.indptr).astype(np.int64)


def _top(recs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    recs = check_recs(recs)
    top = recs[:, : check_k(k, recs)]
    return top, top != PAD


def _check_items(top: np.ndarray, n_items: int, what: str) -> None:
    if top.size and top.max() >= n_items:
        raise ValueError(f"recs holds item {top.max()} but {what} covers {n_items} items")


def _list_mean(values: np.ndarray, valid: np.ndarray) -> float:
    """Mean over users of the mean over each list's valid entries (empty list -> 0)."""
    n = valid.sum(axis=1)
    per_user = np.where(n > 0, np.where(valid, values, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)
    return float(per_user.mean()) if per_user.size else float("nan")


def catalogue_coverage(recs: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-k list.

    Args:
        recs: int (U, K) padded lists.
        n_items: catalogue size I.
        k: cutoff.

    Returns:
        distinct recommended items / I, in [0, 1].
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    top, valid = _top(recs, k)
    _check_items(top, n_items, "the catalogue")
    return float(np.unique(top[valid]).size / n_items)


def novelty(recs: np.ndarray, counts: np.ndarray, n_users: int, k: int) -> float:
    """Mean self-information ``log2(n_users / count_i)`` of recommended items, in bits.

    An item nobody interacted with counts as seen by one user (its information is bounded
    by ``log2(n_users)``).

    Args:
        recs: int (U, K) padded lists.
        counts: (I,) users per item in the training data (:func:`item_counts`).
        n_users: number of users behind ``counts``.
        k: cutoff.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if n_users < 1 or (counts.size and counts.max() > n_users):
        raise ValueError(f"n_users must be >= 1 and >= every count, got {n_users}")
    top, valid = _top(recs, k)
    _check_items(top, counts.size, "counts")
    info = np.log2(n_users / np.maximum(counts, 1.0))
    return _list_mean(info[np.where(valid, top, 0)], valid)


def popularity_bias(recs: np.ndarray, counts: np.ndarray, n_users: int, k: int) -> float:
    """Average recommendation popularity: mean share of users who know a recommended item.

    Args:
        recs: int (U, K) padded lists.
        counts: (I,) users per item in the training data (:func:`item_counts`).
        n_users: number of users behind ``counts``.
        k: cutoff.

    Returns:
        Mean over users of the mean ``count_i / n_users`` over their list, in [0, 1].
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    counts = np.asarray(counts, dtype=np.float64)
    top, valid = _top(recs, k)
    _check_items(top, counts.size, "counts")
    return _list_mean(counts[np.where(valid, top, 0)] / n_users, valid)


def _pair_similarity(features: np.ndarray | sp.spmatrix, ids: np.ndarray) -> np.ndarray:
    """Similarity of every pair in each list: (B, k, k); categories compare equal or not."""
    if isinstance(features, np.ndarray) and features.ndim == 1:
        cats = features[ids]
        return (cats[:, :, None] == cats[:, None, :]).astype(np.float64)
    rows = features[ids.ravel()]
    vecs = np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float64)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs = (vecs / np.maximum(norms, 1e-12)).reshape(*ids.shape, -1)
    return np.einsum("bkd,bjd->bkj", vecs, vecs)


def intra_list_diversity(
    recs: np.ndarray,
    features: np.ndarray | sp.spmatrix,
    k: int,
    block_users: int = 1024,
) -> float:
    """Mean pairwise distance between the items of each top-k list.

    Distance is ``1 - cosine`` for item vectors (2-D dense or sparse, e.g. multi-hot
    categories; a zero vector is at distance 1 from everything) and ``0``/``1`` for
    same/different category when ``features`` is a 1-D int array. Lists with fewer than two
    items score 0.

    Args:
        recs: int (U, K) padded lists.
        features: (I, D) item vectors, or (I,) int category per item.
        k: cutoff.
        block_users: users per block (memory is about block_users * k * k floats).
    """
    top, valid = _top(recs, k)
    _check_items(top, features.shape[0], "features")
    if block_users < 1:
        raise ValueError(f"block_users must be >= 1, got {block_users}")
    per_user = np.zeros(top.shape[0], dtype=np.float64)
    for start in range(0, top.shape[0], block_users):
        ids, ok = top[start : start + block_users], valid[start : start + block_users]
        dist = 1.0 - _pair_similarity(features, np.where(ok, ids, 0))
        pair_ok = ok[:, :, None] & ok[:, None, :]
        pair_ok &= ~np.eye(ids.shape[1], dtype=bool)[None]
        n_pairs = pair_ok.sum(axis=(1, 2))
        total = np.where(pair_ok, dist, 0.0).sum(axis=(1, 2))
        per_user[start : start + ids.shape[0]] = np.where(
            n_pairs > 0, total / np.maximum(n_pairs, 1), 0.0
        )
    return float(per_user.mean()) if per_user.size else float("nan")
