"""Most-popular baseline: every user gets the items most users interacted with."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from algorithms.cf.base import Recommender


class Popularity(Recommender):
    """Scores each item by the number of distinct users who interacted with it."""

    name = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self.counts: np.ndarray | None = None
        """float32 (I,): distinct users per item in the fitted matrix."""

    def _fit(self, user_items: sp.csr_matrix) -> None:
        self.counts = np.bincount(user_items.indices, minlength=user_items.shape[1]).astype(
            np.float32
        )

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """The same popularity row for every user: float32 (B, I)."""
        ids = self.check_users(user_ids)
        return np.broadcast_to(self.counts, (ids.size, self.n_items)).copy()
