"""Exact top-k selection over a block of dense scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

PAD = -1
"""Id that pads a list when fewer than k items remain after exclusion."""


def top_k(
    scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k best items of each row, best first.

    ``np.argpartition`` finds the k best in linear time, then only those k are sorted (by
    score, descending; equal scores by item id, ascending).

    Args:
        scores: float (B, I), one row per user. Not modified.
        k: how many items to return per row; above I, every row is padded.
        exclude: optional sparse (B, I); every stored entry (whatever its value) removes that
            item from that row's candidates.

    Returns:
        ``(ids, values)``: int64 (B, k) item ids padded with -1, and float32 (B, k) scores
        padded with ``-inf``.

    Raises:
        ValueError: ``k`` < 1, ``scores`` is not 2-D or holds NaN, or ``exclude``'s shape
            differs from ``scores``'.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (users, items), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN; the model is broken")
    n_rows, n_items = scores.shape
    work = scores.astype(np.float32, copy=True)
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
        exclude = sp.csr_matrix(exclude)
        rows = np.repeat(np.arange(n_rows), np.diff(exclude.indptr))
        work[rows, exclude.indices] = -np.inf
    width = min(k, n_items)
    if width < n_items:
        cand = np.argpartition(-work, width - 1, axis=1)[:, :width]
    else:
        cand = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    cand_scores = np.take_along_axis(work, cand, axis=1)
    order = np.lexsort((cand, -cand_scores), axis=1)
    ids = np.full((n_rows, k), PAD, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=np.float32)
    ids[:, :width] = np.take_along_axis(cand, order, axis=1)
    values[:, :width] = np.take_along_axis(cand_scores, order, axis=1)
    ids[np.isneginf(values)] = PAD
    return ids, values
