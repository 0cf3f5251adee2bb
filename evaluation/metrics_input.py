"""Checked inputs of the metrics: recommendation lists, ground truth, per-user means.

Shapes: U users, K list length, I items. A recommendation list is a padded int array
``recs`` of shape (U, K), best first, padded at the end with ``-1``. The ground truth is a
CSR matrix (U, I) whose stored non-zero entries are the relevant items (their values are the
gains of graded metrics), or a padded int array (U, T) of relevant item ids.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

PAD = -1
"""The id that pads a recommendation list or a padded truth array."""


class EmptyTruthWarning(UserWarning):
    """Some users have no relevant item: their metric is NaN and left out of the mean."""


def check_recs(recs: np.ndarray) -> np.ndarray:
    """Return ``recs`` as an int64 (U, K) array after checking it.

    Raises:
        TypeError: ``recs`` is not an integer array.
        ValueError: ``recs`` is not 2-D, holds an id below -1, or repeats an item in one list.
    """
    recs = np.asarray(recs)
    if recs.dtype.kind not in "iu":
        raise TypeError(f"recs must hold integer item ids, got dtype {recs.dtype}")
    if recs.ndim != 2:
        raise ValueError(f"recs must be 2-D (users, K), got shape {recs.shape}")
    recs = recs.astype(np.int64, copy=False)
    if recs.size and recs.min() < PAD:
        raise ValueError(f"recs holds id {recs.min()}; ids are >= 0, padding is {PAD}")
    if recs.shape[1] > 1:
        ordered = np.sort(recs, axis=1)
        dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD)
        if dup.any():
            user = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(f"recs repeats an item in the list of row {user}: {recs[user]}")
    return recs


def padded_to_csr(ids: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Turn a padded (U, T) array of item ids into a binary CSR matrix (U, n_items).

    Raises:
        ValueError: an id is >= ``n_items`` or below -1.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2:
        raise ValueError(f"padded ids must be 2-D (users, T), got shape {ids.shape}")
    if ids.size and (ids.min() < PAD or ids.max() >= n_items):
        raise ValueError(f"padded ids must lie in [-1, {n_items}), got {ids.min()}..{ids.max()}")
    rows, cols = np.nonzero(ids != PAD)
    data = np.ones(rows.shape[0], dtype=np.float64)
    out = sp.csr_matrix((data, (rows, ids[rows, cols])), shape=(ids.shape[0], n_items))
    out.data[:] = 1.0  # a repeated id counts once
    return out


def check_truth(truth: sp.spmatrix | np.ndarray, recs: np.ndarray) -> sp.csr_matrix:
    """Return the ground truth as a canonical CSR (U, I) with explicit zeros removed.

    Args:
        truth: CSR-convertible sparse matrix (U, I) or padded int array (U, T).
        recs: the checked recommendation lists (U, K); their ids must be < I.

    Raises:
        ValueError: the row counts differ, a recommended id is outside the truth's columns,
            or a stored gain is negative.
    """
    if isinstance(truth, np.ndarray):
        n_items = int(max(truth.max(initial=PAD), recs.max(initial=PAD))) + 1
        truth = padded_to_csr(truth, n_items)
    if not sp.issparse(truth):
        raise TypeError(f"truth must be a sparse matrix or a padded array, got {type(truth)}")
    truth = sp.csr_matrix(truth, dtype=np.float64, copy=True)
    truth.eliminate_zeros()
    truth.sum_duplicates()
    truth.sort_indices()
    if truth.shape[0] != recs.shape[0]:
        raise ValueError(f"truth has {truth.shape[0]} rows but recs has {recs.shape[0]}")
    if recs.size and recs.max() >= truth.shape[1]:
        raise ValueError(f"recs holds item {recs.max()} but truth has {truth.shape[1]} columns")
    if truth.nnz and truth.data.min() < 0:
        raise ValueError(f"truth gains must be >= 0, got {truth.data.min()}")
    return truth


def check_k(k: int, recs: np.ndarray) -> int:
    """Return ``k`` after checking it is a positive int; a k above K is allowed.

    Raises:
        ValueError: ``k`` is not a positive integer.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def warn_empty_truth(n_empty: int, n_users: int, what: str) -> None:
    """Warn (:class:`EmptyTruthWarning`) that ``n_empty`` users are left out of ``what``."""
    if n_empty:
        warnings.warn(
            f"{what}: {n_empty} of {n_users} users have no relevant item; their metrics are "
            "NaN and left out of the means",
            EmptyTruthWarning,
            stacklevel=3,
        )


def nan_mean(values: np.ndarray) -> float:
    """Mean over the users whose value is not NaN; NaN when no user has a value."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")
