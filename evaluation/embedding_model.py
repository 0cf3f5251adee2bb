"""The embedding model as MLflow stores it: user and item vectors with their ids, saved as
numpy arrays and Arrow files (no pickle) and served as a pyfunc (top-k items of a user)."""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel

from algorithms.topk import topk_inner_product
from evaluation.ids import IdsLike, id_array, rows_in

log = logging.getLogger(__name__)

_ARTIFACTS = ("users", "user_vectors", "items", "item_vectors")
MODEL_SCRIPT = (
    '"""recpipe embedding model (logged as code; the vectors are artifacts)."""\n'
    "import mlflow\n"
    "from evaluation.embedding_model import EmbeddingModel\n"
    "mlflow.models.set_model(EmbeddingModel())\n"
)
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "pyarrow", "scipy", "threadpoolctl")


# -- the embedding model --------------------------------------------------------------------
def _ids_table(ids: pa.Array) -> pa.Table:
    return pa.table({"id": ids})


def _vectors(values: np.ndarray | None, n: int, what: str) -> np.ndarray:
    """``values`` as float32 (n, F); ``None`` stands for no rows (n must be 0)."""
    arr = np.zeros((0, 0), np.float32) if values is None else np.asarray(values, np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{what} has shape {arr.shape} for {n} ids")
    return arr


class EmbeddingModel(PythonModel):
    """User and item vectors with their id maps; scores are inner products.

    Attributes:
        user_id_array: (U,) Arrow user ids; row ``u`` of ``user_vectors`` is id ``u``.
        user_vectors: float32 (U, F).
        item_id_array: (I,) Arrow item ids; row ``i`` of ``item_vectors`` is id ``i``.
        item_vectors: float32 (I, F).

    Ids stay in Arrow (no Python object per id) and are looked up by Arrow's hash kernels;
    ``user_ids`` and ``item_ids`` give them as numpy arrays for people and tests.
    """

    def __init__(self, user_ids: IdsLike = (), user_vectors: np.ndarray | None = None,
                 item_ids: IdsLike = (), item_vectors: np.ndarray | None = None) -> None:
        self._set(user_ids, user_vectors, item_ids, item_vectors)

    def _set(self, user_ids: IdsLike, user_vectors: np.ndarray | None,
             item_ids: IdsLike, item_vectors: np.ndarray | None) -> None:
        self.user_id_array = id_array(user_ids)
        self.item_id_array = id_array(item_ids)
        n_users, n_items = len(self.user_id_array), len(self.item_id_array)
        self.user_vectors = _vectors(user_vectors, n_users, "user_vectors")
        self.item_vectors = _vectors(item_vectors, n_items, "item_vectors")
        if self.user_vectors.shape[1] != self.item_vectors.shape[1] and n_users and n_items:
            raise ValueError(f"user vectors have {self.user_vectors.shape[1]} dimensions but "
                             f"item vectors have {self.item_vectors.shape[1]}")

    @property
    def user_ids(self) -> np.ndarray:
        """The user ids as a numpy object array (a copy: for people and tests)."""
        return self.user_id_array.to_numpy(zero_copy_only=False)

    @property
    def item_ids(self) -> np.ndarray:
        """The item ids as a numpy object array (a copy: for people and tests)."""
        return self.item_id_array.to_numpy(zero_copy_only=False)

    # -- MLflow interface ---------------------------------------------------------------
    def load_context(self, context: Any) -> None:
        """Read the vectors and id maps from the logged artifacts."""
        paths = context.artifacts

        def ids(name: str) -> pa.Array:
            with pa.memory_map(paths[name]) as source:
                return pa.ipc.open_file(source).read_all().column("id").combine_chunks()

        self._set(ids("users"), np.load(paths["user_vectors"], allow_pickle=False),
                  ids("items"), np.load(paths["item_vectors"], allow_pickle=False))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Top-k items of each user id in ``model_input["user_id"]``.

        Args:
            context: unused (the artifacts were read by :meth:`load_context`).
            model_input: a frame with a ``user_id`` column (Q rows).
            params: ``{"k": int}``, default 10.

        Returns:
            Long frame ``user_id, item_id, score, rank`` (rank 1 = best); users without a
            vector get no rows.
        """
        k = int((params or {}).get("k", 10))
        users = [str(u) for u in model_input["user_id"].tolist()]
        rows, scores = self.recommend(users, k)
        q, col = np.nonzero(rows >= 0)
        return pd.DataFrame({
            "user_id": np.asarray(users, dtype=object)[q],
            "item_id": self.item_id_array.take(pa.array(rows[q, col])).to_numpy(
                zero_copy_only=False),
            "score": scores[q, col].astype(np.float64),
            "rank": (col + 1).astype(np.int64),
        })

    # -- in-process interface -----------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def non_finite(self) -> int:
        """Number of NaN or infinite values in both vector matrices."""
        return int((~np.isfinite(self.user_vectors)).sum()
                   + (~np.isfinite(self.item_vectors)).sum())

    def user_rows(self, user_ids: IdsLike) -> np.ndarray:
        """(Q,) int64 rows of ``user_ids`` (-1 for unknown users)."""
        return rows_in(self.user_id_array, user_ids)

    def item_rows(self, item_ids: IdsLike) -> np.ndarray:
        """(N,) int64 rows of ``item_ids`` (-1 for unknown items)."""
        return rows_in(self.item_id_array, item_ids)

    def recommend(self, user_ids: IdsLike, k: int,
                  exclude: sp.spmatrix | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k items by inner product for each user.

        Args:
            user_ids: Q user ids.
            k: items per user (>= 1).
            exclude: optional sparse (Q, I) matrix over this model's item rows; a stored
                entry ``(q, i)`` keeps item ``i`` out of user ``q``'s list.

        Returns:
            ``(rows, scores)``: int64 (Q, k) item rows of this model (-1 pads) and float32
            (Q, k) scores, best first. Unknown users get an all -1 row.

        Raises:
            ValueError: ``k < 1``, or the vectors hold NaN or infinite values.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = len(user_ids)
        rows = np.full((q, k), -1, dtype=np.int64)
        scores = np.full((q, k), -np.inf, dtype=np.float32)
        urows = self.user_rows(user_ids)
        known = np.flatnonzero(urows >= 0)
        if not len(known) or not len(self.item_id_array):
            return rows, scores
        excl = None if exclude is None else sp.csr_matrix(exclude)[known]
        got, sims = topk_inner_product(self.user_vectors[urows[known]], self.item_vectors,
                                       min(k, len(self.item_id_array)), exclude=excl)
        rows[known, : got.shape[1]] = got
        scores[known, : got.shape[1]] = sims
        return rows, scores


def pip_requirements() -> list[str]:
    out = []
    for name in _REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def write_artifacts(model: EmbeddingModel, folder: Path) -> dict[str, str]:
    paths = {name: folder / f"{name}.{'arrow' if name in ('users', 'items') else 'npy'}"
             for name in _ARTIFACTS}
    for name, ids in (("users", model.user_id_array), ("items", model.item_id_array)):
        table = _ids_table(ids)
        with pa.OSFile(str(paths[name]), "wb") as sink, \
                pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    np.save(paths["user_vectors"], model.user_vectors, allow_pickle=False)
    np.save(paths["item_vectors"], model.item_vectors, allow_pickle=False)
    return {name: str(path) for name, path in paths.items()}
