"""Fitting implicit-feedback ALS on one machine (``implicit``, CPU or CUDA), checking the
factors, and folding new interactions into user vectors with the item vectors fixed."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from algorithms.cf.als import ImplicitALS, check_factors
from algorithms.cf.base import check_user_items
from conf.errors import FactorizationError
from conf.pipeline import AlsSettings

log = logging.getLogger(__name__)


def spark_reg_param(als: AlsSettings) -> float:
    """MLlib's ``regParam``: ``als.spark_reg_param`` if set, else ``als.regularization``."""
    return als.regularization if als.spark_reg_param is None else als.spark_reg_param


# -- fitting --------------------------------------------------------------------------------
def cuda_available() -> bool:
    """Whether ``implicit`` was built with CUDA and sees a device."""
    try:
        import implicit.gpu
    except ImportError:  # pragma: no cover - implicit is a pinned dependency
        return False
    return bool(implicit.gpu.HAS_CUDA)


class GpuImplicitALS(ImplicitALS):
    """:class:`~algorithms.cf.als.ImplicitALS` fitted by ``implicit.gpu.als``, then kept on CPU.

    The fitted factors are copied to a CPU model, so scoring and fold-in are those of the
    parent class.
    """

    name = "ials-gpu"

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.gpu.als import AlternatingLeastSquares
        from implicit.recommender_base import ModelFitError

        model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                        alpha=1.0, iterations=self.iterations,
                                        random_state=self.seed)
        try:
            model.fit(self.confidence(user_items), show_progress=False)
        except ModelFitError as exc:
            raise FactorizationError(f"implicit GPU ALS fit failed: {exc}") from exc
        cpu = model.to_cpu()
        check_factors(cpu.user_factors, "user factors")
        check_factors(cpu.item_factors, "item factors")
        self._model = cpu


def fit_implicit(matrix: sp.csr_matrix, als: AlsSettings, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Fit ALS with ``implicit`` (through :class:`~algorithms.cf.als.ImplicitALS`).

    Args:
        matrix: (U, I) non-negative confidences.
        als: factors, iterations, regularization, alpha, threads, GPU use.
        seed: seed of the random initial factors.

    Returns:
        ``(user_vectors, item_vectors)``: float32 (U, F) and (I, F), C-contiguous.

    Raises:
        FactorizationError: the factors hold NaN, infinite values or only zeros.
    """
    cls = ImplicitALS
    if als.use_gpu:
        if cuda_available():
            cls = GpuImplicitALS
        else:
            log.warning("als.use_gpu is set but implicit has no CUDA here; fitting on CPU")
    model = cls(factors=als.factors, regularization=als.regularization, alpha=als.alpha,
                iterations=als.iterations, seed=seed, num_threads=als.num_threads)
    model.fit(matrix)
    users = np.ascontiguousarray(model.user_vectors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_vectors, dtype=np.float32)
    check_vectors(users, "user vectors", als.factors)
    check_vectors(items, "item vectors", als.factors)
    return users, items


def check_vectors(vectors: np.ndarray, what: str, factors: int) -> None:
    """Refuse vectors that must not be published.

    Args:
        vectors: (N, F) factors.
        what: name used in the messages (``"user vectors"``).
        factors: the expected F.

    Raises:
        ValueError: ``vectors`` is not 2-D with ``factors`` columns.
        FactorizationError: a NaN or infinite value, or every value is zero.
    """
    if vectors.ndim != 2 or vectors.shape[1] != factors:
        raise ValueError(f"{what} must have shape (N, {factors}), got {vectors.shape}")
    check_factors(vectors, what)


def fold_in_users(item_vecs: np.ndarray, user_items: sp.spmatrix, als: AlsSettings
                  ) -> np.ndarray:
    """User vectors from interactions with the item vectors held fixed (one exact ALS step).

    For a user with stored confidences ``x_i`` on items ``i``, ``c_i = 1 + alpha * x_i`` and::

        (Y'Y + sum_i (c_i - 1) y_i y_i' + lambda_u I) x_u = sum_i c_i y_i

    with ``lambda_u = regularization`` for the ``implicit`` backend and ``lambda_u =
    spark_reg_param * n_u`` (n_u the user's stored interactions) for ``spark``, whose
    convention that is. Solved exactly in float64.

    Args:
        item_vecs: (I, F) item vectors of the published model.
        user_items: sparse (B, I) non-negative confidences, one row per user.
        als: alpha, regularization and backend of the model that made ``item_vecs``.

    Returns:
        float32 (B, F). A row without interactions gets the zero vector.

    Raises:
        TypeError: ``user_items`` is not a scipy sparse matrix.
        ValueError: ``item_vecs`` is not 2-D and finite, or ``user_items`` has a column
            count other than I, or a negative or NaN value.
    """
    item_vecs = np.asarray(item_vecs)
    if item_vecs.ndim != 2 or not np.isfinite(item_vecs).all():
        raise ValueError(f"item_vecs must be a finite (I, F) array, got shape {item_vecs.shape}")
    if not sp.issparse(user_items):
        raise TypeError(f"user_items must be a scipy sparse matrix, got {type(user_items)}")
    n_items, n_factors = item_vecs.shape
    if user_items.shape[1] != n_items:
        raise ValueError(f"user_items has {user_items.shape[1]} columns but item_vecs has "
                         f"{n_items} rows")
    if user_items.shape[0] == 0:
        return np.zeros((0, n_factors), dtype=np.float32)
    rows = check_user_items(user_items)
    y = item_vecs.astype(np.float64)
    yty = y.T @ y
    eye = np.eye(n_factors)
    out = np.zeros((rows.shape[0], n_factors), dtype=np.float32)
    for u in range(rows.shape[0]):
        start, stop = rows.indptr[u], rows.indptr[u + 1]
        if start == stop:
            continue
        yu = y[rows.indices[start:stop]]
        conf = 1.0 + als.alpha * rows.data[start:stop].astype(np.float64)
        reg = (spark_reg_param(als) * (stop - start) if als.backend == "spark"
               else als.regularization)
        lhs = yty + (yu.T * (conf - 1.0)) @ yu + reg * eye
        out[u] = np.linalg.solve(lhs, yu.T @ conf)
    return out
