"""The one base class of the collaborative-filtering models.

Shapes: U users, I items, B users in a block, F latent factors. A model is fitted on a
user x item CSR matrix (U, I) of non-negative interaction strengths; users and items are the
matrix's row and column numbers.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import scipy.sparse as sp

from algorithms.cf.topk import top_k
from conf.errors import NotFittedError

logger = logging.getLogger(__name__)


def check_user_items(user_items: sp.spmatrix) -> sp.csr_matrix:
    """Return ``user_items`` as a float32 CSR matrix after checking it.

    Raises:
        TypeError: not a scipy sparse matrix.
        ValueError: empty shape, a NaN or a negative value.
    """
    if not sp.issparse(user_items):
        raise TypeError(f"user_items must be a scipy sparse matrix, got {type(user_items)}")
    csr = sp.csr_matrix(user_items, dtype=np.float32)
    if min(csr.shape) < 1:
        raise ValueError(f"user_items must have users and items, got shape {csr.shape}")
    if csr.nnz and not np.isfinite(csr.data).all():
        raise ValueError("user_items holds NaN or infinite values")
    if csr.nnz and csr.data.min() < 0:
        raise ValueError(f"user_items must be >= 0, got {csr.data.min()}")
    csr.sum_duplicates()
    csr.sort_indices()
    return csr


class Recommender(ABC):
    """Fit on a (U, I) matrix, then score and recommend for the fitted users in blocks.

    Subclasses implement :meth:`_fit` and :meth:`score`; :meth:`recommend` is shared and
    exact (every item is scored).
    """

    name: str = "base"
    """Short name used in reports and settings."""

    def __init__(self) -> None:
        self._shape: tuple[int, int] | None = None

    @property
    def n_users(self) -> int:
        """U, the number of users seen by :meth:`fit`."""
        return self._fitted_shape()[0]

    @property
    def n_items(self) -> int:
        """I, the number of items seen by :meth:`fit`."""
        return self._fitted_shape()[1]

    @property
    def user_vectors(self) -> np.ndarray | None:
        """User embeddings (U, F) where the model has them, else None."""
        return None

    @property
    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings (I, F) where the model has them, else None."""
        return None

    def _fitted_shape(self) -> tuple[int, int]:
        if self._shape is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        return self._shape

    def fit(self, user_items: sp.spmatrix) -> Self:
        """Fit on ``user_items`` (U, I), non-negative; returns self."""
        csr = check_user_items(user_items)
        self._fit(csr)
        self._shape = csr.shape
        logger.debug("fitted %s on %d x %d, %d nnz", self.name, *csr.shape, csr.nnz)
        return self

    @abstractmethod
    def _fit(self, user_items: sp.csr_matrix) -> None:
        """Fit on a checked float32 CSR (U, I)."""

    @abstractmethod
    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores of every item for the given fitted users: float32 (B, I)."""

    def check_users(self, user_ids: np.ndarray) -> np.ndarray:
        """Return ``user_ids`` as int64 (B,) after checking they are fitted users.

        Raises:
            ValueError: an id is outside [0, U).
        """
        ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_users):
            raise ValueError(
                f"user ids must lie in [0, {self.n_users}), got {ids.min()}..{ids.max()}"
            )
        return ids

    def recommend(
        self,
        user_ids: np.ndarray,
        k: int,
        exclude_csr: sp.spmatrix | None = None,
        block_size: int = 2048,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k items for each user, scored in blocks of users.

        Args:
            user_ids: int (B,) fitted user ids.
            k: list length.
            exclude_csr: optional sparse (B, I), rows aligned with ``user_ids``: stored entries
                are items not to recommend (e.g. the user's training items).
            block_size: users scored at once (memory: block_size x I float32).

        Returns:
            ``(ids, scores)``: int64 (B, k) padded with -1, float32 (B, k) padded with -inf.

        Raises:
            ValueError: bad ids, ``k`` or ``block_size`` < 1, or ``exclude_csr`` misshaped.
        """
        ids = self.check_users(user_ids)
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if exclude_csr is not None:
            exclude_csr = sp.csr_matrix(exclude_csr)
            if exclude_csr.shape != (ids.size, self.n_items):
                raise ValueError(
                    f"exclude_csr must have shape ({ids.size}, {self.n_items}), "
                    f"got {exclude_csr.shape}"
                )
        out_ids = np.empty((ids.size, k), dtype=np.int64)
        out_scores = np.empty((ids.size, k), dtype=np.float32)
        for start in range(0, ids.size, block_size):
            stop = min(start + block_size, ids.size)
            block_exclude = None if exclude_csr is None else exclude_csr[start:stop]
            out_ids[start:stop], out_scores[start:stop] = top_k(
                self.score(ids[start:stop]), k, block_exclude
            )
        return out_ids, out_scores
