"""Interaction arrays to matrices, k-core filtering and per-user random splits.

Interactions are aligned int64 arrays ``users`` and ``items`` of shape (N,). Every function
here is vectorised (sorts and bincounts), no loop per user.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def to_csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Binary float32 CSR (U, I) with a 1 at each (user, item); repeats count once."""
    matrix = sp.csr_matrix(
        (np.ones(users.shape[0], dtype=np.float32), (users, items)), shape=shape
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def dedupe(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mask (N,) keeping the first occurrence of each (user, item) pair."""
    pairs = np.stack([users, items], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    keep = np.zeros(users.shape[0], dtype=bool)
    keep[first] = True
    return keep


def reindex(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ids to 0..n-1 in sorted order; returns ``(new_ids, original ids (n,))``."""
    originals, new_ids = np.unique(ids, return_inverse=True)
    return new_ids.astype(np.int64), originals


def k_core(users: np.ndarray, items: np.ndarray, min_count: int) -> np.ndarray:
    """Mask (N,) of the interactions left after repeatedly dropping rare users and items.

    Users and items with fewer than ``min_count`` interactions are removed, and again, until
    every remaining user and item has at least ``min_count`` (RecBole's
    ``user_inter_num_interval`` / ``item_inter_num_interval`` filter).
    """
    keep = np.ones(users.shape[0], dtype=bool)
    while True:
        user_n = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_n = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        drop = keep & ((user_n[users] < min_count) | (item_n[items] < min_count))
        if not drop.any():
            return keep
        keep &= ~drop


def _rank_within_user(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order`` (grouped by user): 0-based rank and the user's count."""
    counts = np.bincount(users)
    sorted_users = users[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(users.shape[0], dtype=np.int64)
    rank[order] = np.arange(users.shape[0]) - starts[sorted_users]
    return rank, counts[users]


def stratified_split(users: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Microsoft Recommenders' ``python_stratified_split``: mask (N,) of the TRAIN rows.

    Each row gets ``RandomState(seed).rand()`` in input order; within a user, rows sorted by
    that number with ``rank / count <= ratio`` (rank from 1) go to train. With the rows in
    the source file's order this reproduces the library's split.

    Args:
        users: int64 (N,) user ids, in source order.
        ratio: share of each user's rows kept in train.
        seed: the protocol's seed (42).
    """
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must lie in (0, 1), got {ratio}")
    noise = np.random.RandomState(seed).rand(users.shape[0])
    rank, counts = _rank_within_user(users, np.lexsort((noise, users)))
    return (rank + 1) / counts <= ratio


def ratio_split(users: np.ndarray, ratios: list[float], seed: int) -> np.ndarray:
    """RecBole's random split grouped by user: part (0, 1, 2, ...) of each row, shape (N,).

    Rows are shuffled with ``seed``, then each user's rows are cut in that order: part
    ``j >= 1`` gets ``int(ratio_j * n)`` rows, part 0 the rest; a part whose share is in
    (0, 1) row is raised to one row taken from part 0 while part 0 keeps more than one
    (RecBole's ``_calcu_split_ids``).

    Args:
        users: int64 (N,) user ids.
        ratios: shares of the parts (normalised to sum 1).
        seed: seed of the shuffle.
    """
    shares = np.asarray(ratios, dtype=np.float64)
    if shares.ndim != 1 or shares.size < 2 or (shares <= 0).any():
        raise ValueError(f"ratios must be >= 2 positive shares, got {ratios}")
    shares = shares / shares.sum()
    perm = np.random.default_rng(seed).permutation(users.shape[0])
    order = perm[np.argsort(users[perm], kind="stable")]
    rank, n = _rank_within_user(users, order)
    n_float = n.astype(np.float64)
    cnt = [np.floor(share * n_float).astype(np.int64) for share in shares]
    cnt[0] = n - sum(cnt[1:])
    for j in range(1, shares.size):
        part = shares.size - j
        tiny = (shares[part] * n_float > 0) & (shares[part] * n_float < 1) & (cnt[0] > 1)
        # RecBole stops at the first part where part 0 has <= 1 row left; with one part
        # raised per step, that is the same as requiring cnt[0] > 1 at each step.
        cnt[part] = cnt[part] + tiny
        cnt[0] = cnt[0] - tiny
    bounds = np.cumsum(np.stack(cnt, axis=1), axis=1)  # (N, parts)
    return (rank[:, None] >= bounds).sum(axis=1)


def sample_users(users: np.ndarray, n_users: int, seed: int) -> np.ndarray:
    """Mask (N,) of the rows of ``n_users`` users drawn without replacement."""
    distinct = np.unique(users)
    if n_users >= distinct.size:
        return np.ones(users.shape[0], dtype=bool)
    chosen = np.random.default_rng(seed).choice(distinct, size=n_users, replace=False)
    return np.isin(users, chosen)


def keep_rows(matrix: sp.csr_matrix, n_rows: int, seed: int) -> sp.csr_matrix:
    """``matrix`` with only ``n_rows`` of its non-empty rows kept (drawn with ``seed``).

    The other rows are emptied, so shapes and row numbers stay; ``n_rows`` 0 or at least the
    number of non-empty rows returns ``matrix`` itself.
    """
    filled = np.flatnonzero(np.diff(matrix.indptr) > 0)
    if n_rows == 0 or n_rows >= filled.size:
        return matrix
    chosen = np.zeros(matrix.shape[0], dtype=np.float32)
    chosen[np.random.default_rng(seed).choice(filled, size=n_rows, replace=False)] = 1.0
    return sp.csr_matrix(sp.diags(chosen) @ matrix)
