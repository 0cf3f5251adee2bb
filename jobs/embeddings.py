"""``recpipe embeddings``: ``gold/training_matrix/ds=`` -> user and item ALS embeddings.

Shapes: U users, I items, F factors (``als.factors``), B users in a fold-in batch.

String ids are mapped to contiguous row and column numbers in sorted order (byte order of
the UTF-8 text, the same in Arrow and Spark), the (U, I) matrix of confidences is factorised
by implicit-feedback ALS, and both factor matrices are written with one ``model_version``:

- ``gold/user_embeddings/ds=``: ``id`` (user id), ``vector`` (list<float32>, length F),
  ``model_version``, ``ds``;
- ``gold/item_embeddings/ds=``: the same for items.

``als.backend`` picks the solver: ``implicit`` (single node; through :mod:`algorithms.cf`) or
``spark`` (MLlib, :mod:`jobs.embeddings_spark`). Both write the same contract, and neither
writes anything when a factor matrix holds NaN, infinite or only zero values
(:class:`~algorithms.cf.errors.FactorizationError`). :func:`fold_in_users` recomputes user vectors
from new interactions with the item vectors fixed (the hourly job).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from conf import Settings, load_settings
from conf.errors import EmptyInput, FactorizationError
from conf.pipeline import AlsSettings
from jobs.cli_common import add_common_args, parse_ds
from jobs.lake import Lake
from jobs.tables import ITEM_EMBEDDINGS, TRAINING_MATRIX, USER_EMBEDDINGS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

from jobs.als_fit import check_vectors, fit_implicit, fold_in_users, spark_reg_param

log = logging.getLogger(__name__)

__all__ = [
    "FactorizationError",
    "IndexedMatrix",
    "build_matrix",
    "check_vectors",
    "embedding_table",
    "fit_implicit",
    "fold_in_users",
    "main",
    "model_version",
    "resolve_seed",
    "run",
]


# -- settings-derived values ----------------------------------------------------------------
def resolve_seed(als: AlsSettings, seed: int) -> int:
    """The ALS seed: ``als.seed`` if set, else the pipeline's root ``seed``."""
    return seed if als.seed is None else als.seed


def version_inputs(als: AlsSettings, seed: int) -> dict[str, object]:
    """The settings that determine the fitted vectors (thread counts and checkpoints do not)."""
    inputs: dict[str, object] = {
        "backend": als.backend, "factors": als.factors, "iterations": als.iterations,
        "regularization": als.regularization, "alpha": als.alpha, "seed": seed,
    }
    if als.backend == "spark":
        inputs.update(spark_reg_param=spark_reg_param(als), spark_blocks=als.spark_blocks)
    else:
        inputs.update(use_gpu=als.use_gpu)
    return inputs


def model_version(ds: str, als: AlsSettings, seed: int) -> str:
    """``als-<ds>-<hash8>``: the same date, backend and model settings give the same string.

    Args:
        ds: logical date ``YYYY-MM-DD``.
        als: the ALS settings (backend included).
        seed: the resolved seed (:func:`resolve_seed`).
    """
    blob = json.dumps(version_inputs(als, seed), sort_keys=True).encode()
    return f"als-{ds}-{hashlib.sha256(blob).hexdigest()[:8]}"


# -- the matrix -----------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexedMatrix:
    """A (U, I) confidence matrix and the string ids of its rows and columns.

    Attributes:
        user_ids: (U,) sorted distinct user ids; row ``u`` is ``user_ids[u]``.
        item_ids: (I,) sorted distinct item ids; column ``i`` is ``item_ids[i]``.
        matrix: float32 CSR (U, I) of confidences, one stored value per input row.
    """

    user_ids: pa.Array
    item_ids: pa.Array
    matrix: sp.csr_matrix


def _index(values: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    ids = pc.unique(values)
    ids = ids.take(pc.sort_indices(ids))
    return ids, pc.index_in(values, value_set=ids).to_numpy(zero_copy_only=False)


def build_matrix(user_id: pa.ChunkedArray | pa.Array, item_id: pa.ChunkedArray | pa.Array,
                 confidence: pa.ChunkedArray | pa.Array) -> IndexedMatrix:
    """Map string ids to contiguous numbers (sorted ids) and build the confidence matrix.

    Args:
        user_id: (N,) string user ids, no nulls.
        item_id: (N,) string item ids, no nulls, aligned with ``user_id``.
        confidence: (N,) finite, non-negative confidences, aligned.

    Returns:
        The :class:`IndexedMatrix` with N stored values.

    Raises:
        EmptyInput: N is 0.
        ValueError: lengths differ, an id is null, a confidence is null, NaN, infinite or
            negative, or a (user, item) pair occurs twice (the message gives the count and an
            example).
    """
    n = len(user_id)
    if len(item_id) != n or len(confidence) != n:
        raise ValueError(f"user_id, item_id and confidence must be aligned, got lengths "
                         f"{n}, {len(item_id)}, {len(confidence)}")
    if n == 0:
        raise EmptyInput("no (user, item, confidence) rows to factorise")
    for name, col in (("user_id", user_id), ("item_id", item_id), ("confidence", confidence)):
        if col.null_count:
            raise ValueError(f"{name} holds {col.null_count} null(s)")
    conf = np.asarray(pc.cast(confidence, pa.float64()).to_numpy(zero_copy_only=False))
    bad = ~np.isfinite(conf) | (conf < 0)
    if bad.any():
        raise ValueError(f"confidence must be finite and >= 0; {int(bad.sum())} value(s) are "
                         f"not, e.g. {conf[bad][0]!r}")
    users, rows = _index(user_id)
    items, cols = _index(item_id)
    matrix = sp.csr_matrix((conf.astype(np.float32), (rows, cols)),
                           shape=(len(users), len(items)))
    if matrix.nnz != n:
        pairs = rows.astype(np.int64) * len(items) + cols
        uniq, counts = np.unique(pairs, return_counts=True)
        dup = int(uniq[counts > 1][0])
        raise ValueError(f"{n - matrix.nnz} duplicate (user, item) row(s), e.g. "
                         f"({users[dup // len(items)]}, {items[dup % len(items)]})")
    return IndexedMatrix(users, items, matrix)


# -- output ---------------------------------------------------------------------------------
def embedding_table(ids: pa.Array | list[str], vectors: np.ndarray, version: str,
                    ds: str) -> pa.Table:
    """Rows of an embeddings table: ``id``, ``vector``, ``model_version``, ``ds``.

    Args:
        ids: (N,) string ids, aligned with ``vectors``.
        vectors: float32 (N, F).
        version: the model version written on every row.
        ds: the partition.

    Raises:
        ValueError: ``ids`` and ``vectors`` differ in length.
        FactorizationError: ``vectors`` hold NaN, infinite values or only zeros.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
        raise ValueError(f"{len(ids)} ids but vectors of shape {vectors.shape}")
    check_vectors(vectors, "vectors", vectors.shape[1])
    n, f = vectors.shape
    offsets = pa.array(np.arange(0, n * f + 1, f, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
    return pa.table({
        "id": ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids, pa.string()),
        "vector": column,
        "model_version": pa.array([version] * n, pa.string()),
        "ds": pa.array([ds] * n, pa.string()),
    })


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict:
    """Fit ALS on ``gold/training_matrix/ds=<ds>`` and overwrite both embedding partitions.

    Args:
        spark: the session (used, or created when None, only by the ``spark`` backend).
        settings: ``als`` and the lake.
        ds: logical date.

    Returns:
        Figures of the run: ``ds``, ``backend``, ``model_version``, ``users``, ``items``,
        ``nnz``, ``factors``, ``fit_s`` and the Delta versions written.

    Raises:
        EmptyInput: the partition has no rows.
        FactorizationError: the fit produced unusable factors; nothing is written.
    """
    if settings.als.backend == "spark":
        from jobs.embeddings_spark import run_spark

        if spark is None:
            from jobs.spark import get_spark

            spark = get_spark(settings)
        return run_spark(spark, settings, ds)
    lake = Lake(settings)
    als, seed = settings.als, resolve_seed(settings.als, settings.seed)
    rows = lake.read_arrow(TRAINING_MATRIX.name, [ds], ["user_id", "item_id", "confidence"])
    if rows.num_rows == 0:
        raise EmptyInput(f"{TRAINING_MATRIX.name}: no rows for ds={ds}")
    indexed = build_matrix(rows["user_id"], rows["item_id"], rows["confidence"])
    began = time.perf_counter()
    users, items = fit_implicit(indexed.matrix, als, seed)
    fit_s = time.perf_counter() - began
    version = model_version(ds, als, seed)
    user_table = embedding_table(indexed.user_ids, users, version, ds)
    item_table = embedding_table(indexed.item_ids, items, version, ds)
    written = {
        USER_EMBEDDINGS.name: lake.overwrite_partitions(USER_EMBEDDINGS.name, user_table, [ds]),
        ITEM_EMBEDDINGS.name: lake.overwrite_partitions(ITEM_EMBEDDINGS.name, item_table, [ds]),
    }
    log.info("ALS %s on %d x %d (%d nnz): %.1f s", version, *indexed.matrix.shape,
             indexed.matrix.nnz, fit_s)
    return {"ds": ds, "backend": als.backend, "model_version": version,
            "users": int(users.shape[0]), "items": int(items.shape[0]),
            "nnz": int(indexed.matrix.nnz), "factors": als.factors, "fit_s": round(fit_s, 3),
            "versions": written}


def main(argv: list[str] | None = None) -> int:
    """``recpipe embeddings --ds D [--backend implicit|spark] [--factors F] [--iterations N]``."""
    parser = argparse.ArgumentParser(prog="recpipe embeddings",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    parser.add_argument("--backend", choices=("implicit", "spark"),
                        help="override als.backend")
    parser.add_argument("--factors", type=int, help="override als.factors")
    parser.add_argument("--iterations", type=int, help="override als.iterations")
    add_common_args(parser)
    args = parser.parse_args(argv)
    als = {k: v for k, v in (("backend", args.backend), ("factors", args.factors),
                             ("iterations", args.iterations)) if v is not None}
    overrides: dict[str, object] = {"als": als} if als else {}
    if args.lake_root:
        overrides["lake_root"] = args.lake_root
    settings = load_settings(env=args.env, overrides=overrides or None)
    result = run(None, settings, args.ds)
    print(json.dumps(result))
    return 0
