"""Implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008) through ``implicit``.

Shapes: U users, I items, F factors, B users in a block. The model sees the confidence
``1 + alpha * x`` of each stored interaction x (implicit's CPU solver takes the stored value
as the confidence itself, so the ``1 +`` is added here, and implicit's own ``alpha`` stays 1).
Unobserved pairs have confidence 1 and preference 0.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from algorithms.cf.base import Recommender, check_user_items
from conf.errors import FactorizationError

logger = logging.getLogger(__name__)


def check_factors(factors: np.ndarray, what: str) -> None:
    """Refuse NaN, infinite or all-zero factors.

    Raises:
        FactorizationError: naming ``what`` and the problem.
    """
    if not np.isfinite(factors).all():
        raise FactorizationError(f"{what} hold NaN or infinite values")
    if factors.size and not np.any(factors):
        raise FactorizationError(f"{what} are all zero")


class ImplicitALS(Recommender):
    """ALS with confidence weighting, fitted by ``implicit.cpu.als``.

    Args:
        factors: F, the embedding size.
        regularization: L2 penalty on the factors (not scaled by interaction counts).
        alpha: confidence scale: an interaction x weighs ``1 + alpha * x``.
        iterations: ALS sweeps.
        seed: seed of the random initial factors.
        num_threads: implicit's worker threads (0: one per core). BLAS stays at 1 thread.
    """

    name = "ials"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 10.0,
        iterations: int = 15,
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        for label, value in (("factors", factors), ("iterations", iterations)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if regularization < 0 or alpha < 0:
            raise ValueError(f"regularization and alpha must be >= 0, got {regularization}, "
                             f"{alpha}")
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.seed, self.num_threads = iterations, seed, num_threads
        self._model = None

    def confidence(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        """Confidence matrix: same pattern as ``user_items``, values ``1 + alpha * x``."""
        conf = user_items.astype(np.float32, copy=True)
        conf.data = 1.0 + np.float32(self.alpha) * conf.data
        return conf

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.recommender_base import ModelFitError

        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=self.num_threads,
            )
            try:
                model.fit(self.confidence(user_items), show_progress=False)
            except ModelFitError as exc:
                raise FactorizationError(f"implicit ALS fit failed: {exc}") from exc
        check_factors(model.user_factors, "user factors")
        check_factors(model.item_factors, "item factors")
        self._model = model

    @property
    def user_vectors(self) -> np.ndarray | None:
        """float32 (U, F) user factors."""
        return None if self._model is None else self._model.user_factors

    @property
    def item_vectors(self) -> np.ndarray | None:
        """float32 (I, F) item factors."""
        return None if self._model is None else self._model.item_factors

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Dot products of the users' factors with every item's: float32 (B, I)."""
        ids = self.check_users(user_ids)
        return self.score_vectors(self._model.user_factors[ids])

    def score_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Scores of every item for arbitrary user vectors (B, F): float32 (B, I)."""
        self._fitted_shape()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.factors:
            raise ValueError(f"vectors must have shape (B, {self.factors}), got {vectors.shape}")
        return vectors @ self._model.item_factors.T

    def fold_in(self, user_items: sp.spmatrix) -> np.ndarray:
        """User vectors for new interaction rows, item factors held fixed.

        Solves each user's least-squares step exactly (implicit's ``recalculate_user``), as
        one more ALS half-sweep would.

        Args:
            user_items: sparse (B, I), one row per user to (re)compute.

        Returns:
            float32 (B, F). A row without interactions gets the zero vector.

        Raises:
            ValueError: ``user_items`` has a column count other than I.
            FactorizationError: the solve produced NaN or infinite values.
        """
        self._fitted_shape()
        rows = check_user_items(user_items)
        if rows.shape[1] != self.n_items:
            raise ValueError(f"user_items must have {self.n_items} columns, got {rows.shape[1]}")
        with threadpool_limits(1, "blas"):
            vectors = self._model.recalculate_user(
                np.arange(rows.shape[0]), self.confidence(rows)
            )
        if not np.isfinite(vectors).all():
            raise FactorizationError("fold-in produced NaN or infinite user vectors")
        return np.asarray(vectors, dtype=np.float32)
