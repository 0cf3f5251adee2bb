"""EASE: closed-form item-item regression (Steck, "Embarrassingly Shallow Autoencoders", 2019).

Shapes: U users, I items, B users in a block. With X the (U, I) interactions and
``P = (X^T X + lambda I)^-1``, the item-item weights are ``W = I - P diag(1/diag(P))`` (zero
diagonal) and a user's scores are ``x W``.

Primal form (I <= U): invert the I x I Gram matrix and keep W.
Dual form (U < I): by Woodbury, ``P = (I - X^T K X) / lambda`` with the U x U matrix
``K = (X X^T + lambda I)^-1``, so a fitted user's scores are ``x - (K X)_u / diag(P)``: only a
U x U inverse and the (U, I) matrix K X are kept. Both forms give the same scores.

The inverse uses torch (Cholesky, float64): scipy's bundled OpenBLAS crashed inverting
30k x 30k matrices on the project's machines (STACK.md).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender

logger = logging.getLogger(__name__)


def inverse_spd(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float64 matrix (N, N), through torch."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float64))
    chol = torch.linalg.cholesky(tensor)
    return torch.cholesky_inverse(chol).numpy()


class EASE(Recommender):
    """Closed-form item-item model with L2 penalty ``l2`` (lambda).

    Args:
        l2: the L2 penalty lambda (> 0); larger favours popular items less sharply.
        form: ``"auto"`` (dual when users < items), ``"primal"`` or ``"dual"``.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, form: str = "auto") -> None:
        super().__init__()
        if not l2 > 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        if form not in ("auto", "primal", "dual"):
            raise ValueError(f"form must be auto, primal or dual, got {form!r}")
        self.l2 = float(l2)
        self.form = form
        self._x: sp.csr_matrix | None = None
        self._weights: np.ndarray | None = None  # primal: W (I, I)
        self._kx: np.ndarray | None = None  # dual: K X (U, I)
        self._diag_p: np.ndarray | None = None  # dual: diag(P) (I,)

    @property
    def dual(self) -> bool:
        """Whether the fitted model uses the users x users form."""
        return self._kx is not None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        x = user_items.astype(np.float64)
        n_users, n_items = x.shape
        use_dual = self.form == "dual" or (self.form == "auto" and n_users < n_items)
        self._x = user_items
        if use_dual:
            gram = (x @ x.T).toarray()
            gram[np.diag_indices_from(gram)] += self.l2
            kx = np.ascontiguousarray(np.asarray(x.T @ inverse_spd(gram)).T)  # K X, (U, I)
            self._diag_p = (1.0 - np.asarray(x.multiply(kx).sum(axis=0)).ravel()) / self.l2
            self._kx, self._weights = kx, None
            logger.info("EASE dual form: %d x %d inverse (l2=%g)", n_users, n_users, self.l2)
        else:
            gram = (x.T @ x).toarray()
            gram[np.diag_indices_from(gram)] += self.l2
            p = inverse_spd(gram)
            weights = -p / np.diag(p)
            weights[np.diag_indices_from(weights)] = 0.0
            self._weights, self._kx, self._diag_p = weights.astype(np.float32), None, None
            logger.info("EASE primal form: %d x %d inverse (l2=%g)", n_items, n_items, self.l2)

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores of every item for fitted users: float32 (B, I)."""
        ids = self.check_users(user_ids)
        rows = self._x[ids]
        if self._weights is not None:
            return np.asarray(rows @ self._weights, dtype=np.float32)
        scores = rows.toarray().astype(np.float64) - self._kx[ids] / self._diag_p
        return scores.astype(np.float32)
