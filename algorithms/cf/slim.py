"""ADMM-SLIM: sparse item-item regression by ADMM (Steck, Dimakopoulou, Riabov, Jebara,
"ADMM SLIM: Sparse Recommendations for Many Users", WSDM 2020).

Shapes: U users, I items, B users in a block. With X the (U, I) interactions and
``G = X^T X``, the weights solve

    min_{B, C}  1/2 ||X - X B||^2 + lambda2/2 ||B||^2 + lambda1 ||C||_1
    s.t.        diag(B) = 0,  B = C  (and C >= 0 when ``nonnegative``),

by ADMM on the split B = C with scaled dual Gamma. The L2 penalty may grow with an item's
popularity, ``lambda2 G_ii^e`` for item i (``l2_exponent`` e; 0 gives the paper's constant
lambda2; RecBole's ADMMSLIM uses 0.5); with D the diagonal of ``lambda2 G_ii^e + rho``,
``P = (G + D)^-1`` and ``B_aux = P G = I - P D``, each iteration is

    B~    = B_aux + P (rho C - Gamma)
    B     = B~ - P diag(gamma),  gamma = diag(B~) / diag(P)      (makes diag(B) = 0)
    C     = soft_threshold(B + Gamma / rho, lambda1 / rho)       (then max(C, 0))
    Gamma = Gamma + rho (B - C)

and a user's scores are ``x C``. It stops early by Boyd et al.'s rule (2011, section 3.3.1):
the primal residual ``||B - C||`` under ``I eps_abs + eps_rel max(||B||, ||C||)`` and the dual
residual ``rho ||C - C_old||`` under ``I eps_abs + eps_rel ||Gamma||`` (Frobenius norms).
With lambda1 = 0 and no sign constraint the fixed point is EASE with lambda = lambda2.

Each iteration costs one I x I x I matrix product and holds five I x I float32 matrices
(P, B, C, Gamma and one work matrix); the inverse is taken once in float64 through torch
(:func:`algorithms.cf.ease.inverse_spd`). C is kept as a CSR when that is smaller.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender
from algorithms.cf.ease import inverse_spd

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ROW_BLOCK = 1024
"""Rows processed at once by the elementwise soft-threshold (bounds its temporary)."""


def _soft_threshold_(values: torch.Tensor, threshold: float, nonnegative: bool) -> None:
    """Replace the torch matrix ``values`` (N, N) by ``sign(v) max(|v| - threshold, 0)``,
    clipped at 0 when ``nonnegative``; in place, a block of rows at a time."""
    for start in range(0, values.shape[0], ROW_BLOCK):
        block = values[start:start + ROW_BLOCK]
        if nonnegative:  # max(soft(v), 0) == max(v - t, 0) for t >= 0
            block.sub_(threshold).clamp_(min=0.0)
        else:
            block.sub_(block.clamp(-threshold, threshold))


class AdmmSlim(Recommender):
    """Sparse item-item regression (SLIM) fitted by ADMM.

    Args:
        l1: lambda1 (>= 0), the L1 penalty on C; larger gives a sparser C.
        l2: lambda2 (> 0), the L2 penalty on B.
        l2_exponent: e (>= 0): item i's L2 penalty is ``l2 * G_ii ** e`` (0: constant).
        rho: the ADMM penalty (> 0).
        iterations: most ADMM iterations (>= 1).
        nonnegative: keep only non-negative weights.
        eps_abs: absolute tolerance of the stopping rule (>= 0; 0 with ``eps_rel`` 0 runs
            every iteration).
        eps_rel: relative tolerance of the stopping rule (>= 0).
        max_items: largest catalogue fitted (>= 1): the cost is O(I^3) per iteration and
            memory five I x I float32 matrices (1.6 GB each at 20 000 items).
    """

    name = "admmslim"

    def __init__(
        self,
        l1: float = 1.0,
        l2: float = 500.0,
        l2_exponent: float = 0.0,
        rho: float = 10000.0,
        iterations: int = 50,
        nonnegative: bool = True,
        eps_abs: float = 1e-4,
        eps_rel: float = 1e-3,
        max_items: int = 20000,
    ) -> None:
        super().__init__()
        if not l1 >= 0:
            raise ValueError(f"l1 must be >= 0, got {l1}")
        if not l2 > 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        if not l2_exponent >= 0:
            raise ValueError(f"l2_exponent must be >= 0, got {l2_exponent}")
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not (eps_abs >= 0 and eps_rel >= 0):
            raise ValueError(f"eps_abs and eps_rel must be >= 0, got {eps_abs}, {eps_rel}")
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.l1, self.l2, self.rho = float(l1), float(l2), float(rho)
        self.l2_exponent = float(l2_exponent)
        self.iterations, self.nonnegative = iterations, bool(nonnegative)
        self.eps_abs, self.eps_rel, self.max_items = float(eps_abs), float(eps_rel), max_items
        self.iterations_run = 0
        """ADMM iterations the last fit used."""
        self._x: sp.csr_matrix | None = None
        self.weights: sp.csr_matrix | np.ndarray | None = None
        """C (I, I), zero diagonal: a CSR when smaller than the dense float32 matrix."""

    def _fit(self, user_items: sp.csr_matrix) -> None:
        import torch

        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"ADMM-SLIM refuses {n_items} items, over max_items={self.max_items}: it "
                "costs O(I^3) per iteration and holds several I x I dense matrices"
            )
        x = user_items.astype(np.float64)
        gram = (x.T @ x).toarray()
        penalty = self.l2 * np.diag(gram) ** self.l2_exponent + self.rho  # D (I,)
        gram[np.diag_indices_from(gram)] += penalty
        p64 = inverse_spd(gram)
        del gram
        aux_diag = torch.from_numpy(1.0 - penalty * np.diag(p64)).float()
        penalty_row = torch.from_numpy(penalty.astype(np.float32))[None, :]
        p_diag = torch.from_numpy(np.diag(p64).copy()).float()
        p = torch.from_numpy(p64.astype(np.float32))
        del p64
        c = torch.zeros_like(p)
        gamma = torch.zeros_like(p)
        b = torch.empty_like(p)
        work = torch.empty_like(p)
        tol = n_items * self.eps_abs
        for it in range(1, self.iterations + 1):
            # B~ = P (rho C - Gamma) + I - P D, its diagonal added in float64 terms
            torch.mul(c, self.rho, out=work).sub_(gamma)
            torch.mm(p, work, out=b)
            b_diag = b.diagonal() + aux_diag
            b.sub_(torch.mul(p, penalty_row, out=work))
            # B = B~ - P diag(diag(B~) / diag(P)), diagonal exactly 0
            torch.mul(p, b_diag / p_diag, out=work)
            b.sub_(work)
            b.diagonal().zero_()
            # C = soft_threshold(B + Gamma / rho, l1 / rho)
            torch.add(b, gamma, alpha=1.0 / self.rho, out=work)
            _soft_threshold_(work, self.l1 / self.rho, self.nonnegative)
            dual = self.rho * float(torch.linalg.norm(c.sub_(work)))  # c now holds C_old - C
            c, work = work, c
            b_norm, c_norm = float(torch.linalg.norm(b)), float(torch.linalg.norm(c))
            primal = float(torch.linalg.norm(b.sub_(c)))  # b now holds B - C
            gamma.add_(b, alpha=self.rho)
            self.iterations_run = it
            logger.debug("ADMM-SLIM iteration %d: primal %.3g, dual %.3g", it, primal, dual)
            if (primal <= tol + self.eps_rel * max(b_norm, c_norm)
                    and dual <= tol + self.eps_rel * float(torch.linalg.norm(gamma))):
                break
        del p, gamma, b, work
        self.weights = _compact(c.numpy())
        self._x = user_items
        logger.info("ADMM-SLIM: %d items, %d iterations (primal %.3g, dual %.3g), %s weights",
                    n_items, self.iterations_run, primal, dual,
                    "sparse" if sp.issparse(self.weights) else "dense")

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Weighted sum of the user's items' rows of C: float32 (B, I)."""
        ids = self.check_users(user_ids)
        scores = self._x[ids] @ self.weights
        if sp.issparse(scores):
            scores = scores.toarray()
        return np.asarray(scores, dtype=np.float32)


def _compact(weights: np.ndarray) -> sp.csr_matrix | np.ndarray:
    """``weights`` (I, I) as a CSR when its data and int32 indices take fewer bytes."""
    nnz = np.count_nonzero(weights)
    if 8 * nnz + 4 * (weights.shape[0] + 1) < weights.nbytes:
        return sp.csr_matrix(weights)
    return weights
