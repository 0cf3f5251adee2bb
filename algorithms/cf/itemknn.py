"""Item-based k-nearest-neighbours with cosine similarity (Sarwar et al. 2001).

Shapes: U users, I items, B users in a block. ``S[i, j]`` is the cosine between the user
columns of items i and j (with a shrink term), kept only for the ``neighbors`` most similar
items i of each item j; a user's scores are ``x S``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)


class ItemKNN(Recommender):
    """Cosine item-item neighbourhood model.

    Args:
        neighbors: similar items kept per item.
        shrink: added to the norm product of the cosine; damps similarities from few users.
        block_items: items whose similarities are computed at once (memory: I x block floats).
    """

    name = "itemknn"

    def __init__(self, neighbors: int = 100, shrink: float = 0.0, block_items: int = 2048):
        super().__init__()
        if neighbors < 1 or block_items < 1:
            raise ValueError(f"neighbors and block_items must be >= 1, got {neighbors}, "
                             f"{block_items}")
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.neighbors, self.shrink, self.block_items = neighbors, shrink, block_items
        self._x: sp.csr_matrix | None = None
        self.similarity: sp.csc_matrix | None = None
        """Pruned similarities (I, I): column j holds item j's neighbours."""

    def _fit(self, user_items: sp.csr_matrix) -> None:
        x = user_items.tocsc().astype(np.float64)
        n_items = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        keep = min(self.neighbors, n_items - 1)
        rows, cols, vals = [], [], []
        for start in range(0, n_items, self.block_items):
            stop = min(start + self.block_items, n_items)
            block = (x.T @ x[:, start:stop]).toarray()  # (I, b)
            block /= np.outer(norms, norms[start:stop]) + self.shrink + 1e-12
            block[np.arange(start, stop), np.arange(stop - start)] = 0.0
            if keep < 1:
                continue
            top = np.argpartition(-block, keep - 1, axis=0)[:keep]  # (keep, b)
            top_vals = np.take_along_axis(block, top, axis=0)
            ok = top_vals > 0
            rows.append(top[ok])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[ok])
            vals.append(top_vals[ok])
        self.similarity = sp.csc_matrix(
            (_concat(vals, np.float32), (_concat(rows, np.int64), _concat(cols, np.int64))),
            shape=(n_items, n_items),
        )
        self._x = user_items

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Sum of similarities to the user's items: float32 (B, I)."""
        ids = self.check_users(user_ids)
        return np.asarray((self._x[ids] @ self.similarity).toarray(), dtype=np.float32)
