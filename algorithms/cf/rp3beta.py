"""RP3beta: three-step random walk item-item graph model, popularity-discounted.

Paudel et al. 2017, "Updatable, accurate, diverse, and scalable recommendations for
interactive applications"; formulated as in Dacrema et al. 2019's reproducibility study.

Shapes: U users, I items, B users in a block. With X the (U, I) interactions,
``P_ui`` is X with each user row divided by its sum and ``P_iu`` is X^T with each item row
divided by its sum (rows without interactions stay zero). Both are raised elementwise to the
power ``alpha``, and the item-item weights are

    W[i, j] = (P_iu^alpha @ P_ui^alpha)[i, j] / popularity(j)^beta,    W[i, i] = 0,

where popularity(j) is the number of users of item j. Row i of W is item i's neighbours j;
only the ``neighbors`` largest entries of each row are kept (then optionally divided by their
sum), and a user's scores are ``x W``: item j scores the sum of W[i, j] over the user's items
i. W is computed in blocks of item rows (memory: block x I floats) and kept as a sparse CSR.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender

logger = logging.getLogger(__name__)


def _row_normalised_power(matrix: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """Each row divided by its sum (empty rows stay empty), then raised to ``alpha``."""
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    out = sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float64)
    if alpha != 1.0:
        out.data **= alpha
    return out


def _top_per_row(block: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``keep`` largest positive entries of each row of ``block`` (b, I).

    Returns:
        ``(rows, cols, values)``: row within the block, column, value of each kept entry.
    """
    n_rows, n_cols = block.shape
    if keep < n_cols:
        cols = np.argpartition(-block, keep - 1, axis=1)[:, :keep]  # (b, keep)
    else:
        cols = np.broadcast_to(np.arange(n_cols), block.shape)
    values = np.take_along_axis(block, cols, axis=1)
    ok = values > 0
    rows = np.broadcast_to(np.arange(n_rows)[:, None], cols.shape)
    return rows[ok], cols[ok], values[ok]


class RP3beta(Recommender):
    """Random-walk item-item model with a popularity penalty.

    Args:
        alpha: power applied to both transition matrices (> 0); 1 is the plain walk.
        beta: popularity penalty (>= 0): column j is divided by popularity(j)^beta; 0 gives
            the plain three-step walk (P3alpha).
        neighbors: largest weights kept per item row (>= 1).
        normalize: divide each kept row by its sum (``normalize_similarity`` in Dacrema's
            implementation).
        block_items: item rows computed at once (>= 1; memory: block_items x I floats).
    """

    name = "rp3beta"

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.5,
        neighbors: int = 200,
        normalize: bool = False,
        block_items: int = 2048,
    ) -> None:
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {neighbors}")
        if block_items < 1:
            raise ValueError(f"block_items must be >= 1, got {block_items}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.neighbors, self.normalize, self.block_items = neighbors, bool(normalize), block_items
        self._x: sp.csr_matrix | None = None
        self.similarity: sp.csr_matrix | None = None
        """Pruned weights W (I, I): row i holds item i's neighbours."""

    def _fit(self, user_items: sp.csr_matrix) -> None:
        n_items = user_items.shape[1]
        p_ui = _row_normalised_power(user_items, self.alpha)  # (U, I)
        p_iu = _row_normalised_power(user_items.T.tocsr(), self.alpha)  # (I, U)
        positive = user_items.indices[user_items.data > 0]
        popularity = np.bincount(positive, minlength=n_items).astype(np.float64)  # users per item
        penalty = np.power(np.maximum(popularity, 1.0), -self.beta)  # (I,)
        keep = min(self.neighbors, n_items)
        rows, cols, vals = [], [], []
        for start in range(0, n_items, self.block_items):
            stop = min(start + self.block_items, n_items)
            block = (p_iu[start:stop] @ p_ui).toarray()  # (b, I)
            block *= penalty
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            block_rows, block_cols, block_vals = _top_per_row(block, keep)
            rows.append(block_rows + start)
            cols.append(block_cols)
            vals.append(block_vals)
        weights = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_items, n_items),
        )
        if self.normalize:
            sums = np.asarray(weights.sum(axis=1)).ravel()
            weights = sp.csr_matrix(sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ weights)
        self.similarity = weights.astype(np.float32)
        self._x = user_items
        logger.info("RP3beta: %d x %d weights, %d kept (alpha=%g, beta=%g)",
                    n_items, n_items, self.similarity.nnz, self.alpha, self.beta)

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Sum of the weights from the user's items: float32 (B, I)."""
        ids = self.check_users(user_ids)
        return np.asarray((self._x[ids] @ self.similarity).toarray(), dtype=np.float32)
