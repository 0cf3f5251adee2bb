"""Graph-filter CF: a normalised item-item graph plus an ideal low-pass filter (GF-CF).

Shen et al., "How Powerful is Graph Convolution for Recommendation?" (CIKM 2021), the
training-free family that BSPM (Choi et al. 2023) and ChebyCF (Kim et al. 2025) build on.

Shapes: U users, I items, B users in a block, k the low-pass rank. With R the (U, I)
interactions, D_U and D_I its row and column degrees and ``e`` the normalisation exponent
(1/2 in the paper), the normalised matrix is ``R~ = D_U^-e R D_I^-e``. A user's scores are

    s_u = r_u R~^T R~  +  alpha * r_u D_I^-e V_k^T V_k D_I^e

The first term is a linear low-pass filter on the item-item graph (one step of normalised
co-occurrence); the second projects onto the k smoothest graph signals (the top k right
singular vectors V_k of R~, from a truncated SVD of the sparse matrix) and re-scales by
degree. ``alpha = 0`` keeps the linear filter alone.

The item-item matrix ``R~^T R~`` is held dense only when I <= ``dense_max_items``; above,
each block of users goes through R~ twice (``(r_b R~^T) R~``, sparse times dense), so memory
stays O(Z + B (U + I)) for Z stored interactions.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender
from algorithms.cf.svd import truncated_svd

logger = logging.getLogger(__name__)


def _inverse_power(degrees: np.ndarray, exponent: float) -> np.ndarray:
    """``degrees ** -exponent`` with 0 where a degree is 0 (float32)."""
    out = np.zeros(degrees.shape, dtype=np.float64)
    positive = degrees > 0
    out[positive] = degrees[positive] ** -exponent
    return out.astype(np.float32)


class GraphFilter(Recommender):
    """GF-CF: linear item-graph filter plus ``alpha`` times a rank-``rank`` ideal filter.

    Args:
        alpha: weight of the ideal low-pass term (>= 0; 0 disables it and the SVD).
        rank: k, singular vectors kept (>= 1; capped at min(U, I)).
        norm: degree normalisation exponent e, in (0, 1].
        dense_max_items: largest I for which the I x I filter is held dense.
        power_iterations: passes of the randomized SVD.
        seed: seed of the randomized SVD.
    """

    name = "gfcf"

    def __init__(
        self,
        alpha: float = 0.3,
        rank: int = 256,
        norm: float = 0.5,
        dense_max_items: int = 8000,
        power_iterations: int = 6,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if not 0 < norm <= 1:
            raise ValueError(f"norm must lie in (0, 1], got {norm}")
        if dense_max_items < 0 or power_iterations < 0:
            raise ValueError(f"dense_max_items and power_iterations must be >= 0, got "
                             f"{dense_max_items}, {power_iterations}")
        self.alpha, self.rank, self.norm = float(alpha), int(rank), float(norm)
        self.dense_max_items, self.power_iterations = dense_max_items, power_iterations
        self.seed = seed
        self._x: sp.csr_matrix | None = None
        self._normalised: sp.csr_matrix | None = None  # R~ (U, I)
        self._normalised_t: sp.csr_matrix | None = None  # R~^T (I, U)
        self._item_filter: np.ndarray | None = None  # R~^T R~ (I, I) when dense
        self._left: np.ndarray | None = None  # D_I^-e V_k^T (I, k)
        self._right: np.ndarray | None = None  # alpha V_k D_I^e (k, I)

    def _fit(self, user_items: sp.csr_matrix) -> None:
        x = user_items
        user_scale = _inverse_power(np.asarray(x.sum(axis=1)).ravel(), self.norm)
        item_scale = _inverse_power(np.asarray(x.sum(axis=0)).ravel(), self.norm)
        normalised = sp.csr_matrix(sp.diags(user_scale) @ x @ sp.diags(item_scale))
        self._x, self._normalised = x, normalised
        self._normalised_t = normalised.T.tocsr()
        n_users, n_items = x.shape
        if n_items <= self.dense_max_items:
            self._item_filter = np.asarray(
                (self._normalised_t @ normalised).toarray(), dtype=np.float32
            )
        else:
            self._item_filter = None
        self._left = self._right = None
        if self.alpha > 0:
            rank = min(self.rank, n_users, n_items)
            _, _, vt = truncated_svd(normalised, rank, self.seed, self.power_iterations)
            with np.errstate(divide="ignore"):
                degree_power = np.where(item_scale > 0, 1.0 / item_scale, 0.0)
            self._left = np.ascontiguousarray((vt * item_scale).T)
            self._right = np.ascontiguousarray(self.alpha * vt * degree_power.astype(np.float32))
        logger.info("GF-CF fitted: %d x %d, %s item filter, ideal rank %s (alpha=%g)", n_users,
                    n_items, "dense" if self._item_filter is not None else "sparse",
                    None if self._left is None else self._left.shape[1], self.alpha)

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Filtered scores of every item for fitted users: float32 (B, I)."""
        ids = self.check_users(user_ids)
        rows = self._x[ids]
        if self._item_filter is not None:
            scores = np.asarray(rows @ self._item_filter, dtype=np.float32)
        else:
            dense_rows = np.ascontiguousarray(rows.T.toarray(), dtype=np.float32)  # (I, B)
            to_users = self._normalised @ dense_rows  # (U, B)
            scores = np.asarray(self._normalised_t @ to_users, dtype=np.float32).T
        if self._left is not None:
            scores = scores + np.asarray(rows @ self._left, dtype=np.float32) @ self._right
        return np.ascontiguousarray(scores, dtype=np.float32)
