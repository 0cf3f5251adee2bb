"""Building a sharded HNSW index over item vectors and tuning its ``efSearch`` (numpy in,
:class:`~serving_export.index.shards.ShardedIndex` out)."""

from __future__ import annotations

import logging

import faiss
import numpy as np

from algorithms.topk import as_vectors
from conf.index import IndexSettings
from serving_export.index.shards import ShardedIndex, omp_threads
from serving_export.index.tuning import tune_ef_search

logger = logging.getLogger(__name__)


def build_sharded_hnsw(
    vectors: np.ndarray,
    item_ids: np.ndarray,
    shards: int,
    hnsw_m: int,
    ef_construction: int,
    ef_search: int,
    threads: int = 0,
    augment: bool = False,
) -> ShardedIndex:
    """Build S inner-product HNSW shards over contiguous row ranges of ``vectors``.

    Args:
        vectors: (N, D) item vectors.
        item_ids: (N,) unique external ids (int64) of the rows.
        shards: S; more than N gives N shards of one item.
        hnsw_m: HNSW ``M``.
        ef_construction: HNSW ``efConstruction``.
        ef_search: the index's default ``efSearch`` (see :func:`tune_ef_search`).
        threads: FAISS OpenMP threads while adding (0: FAISS's default). With more than one
            thread, HNSW insertion order, and so the graph, may differ between runs.
        augment: add the sphere coordinate (see the module docstring).

    Raises:
        ValueError: no vectors, ids not (N,) or not unique, or a parameter below 1.
    """
    x = as_vectors(vectors, "vectors")
    ids = np.asarray(item_ids)
    if x.shape[0] == 0:
        raise ValueError("vectors must hold at least one row")
    if ids.shape != (x.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"item_ids must be ({x.shape[0]},) integers, got {ids.shape} {ids.dtype}")
    if np.unique(ids).size != ids.size:
        raise ValueError("item_ids must be unique")
    for name, value in (("shards", shards), ("hnsw_m", hnsw_m),
                        ("ef_construction", ef_construction), ("ef_search", ef_search)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    count = min(shards, x.shape[0])
    if augment:
        squared = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        extra = np.sqrt(np.maximum(squared.max() - squared, 0.0)).astype(np.float32)
        x = np.hstack([x, extra[:, None]])
    built, id_maps = [], []
    with omp_threads(threads):
        for rows in np.array_split(np.arange(x.shape[0]), count):
            shard = faiss.IndexHNSWFlat(x.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            shard.hnsw.efConstruction = ef_construction
            shard.add(x[rows[0] : rows[-1] + 1])
            built.append(shard)
            id_maps.append(ids[rows].astype(np.int64))
    logger.info("built %d HNSW%d shards over %d x %d vectors (augmented: %s)", count, hnsw_m,
                x.shape[0], x.shape[1] - int(augment), augment)
    return ShardedIndex(built, id_maps, hnsw_m, ef_construction, ef_search, augmented=augment)


def build_index(
    vectors: np.ndarray,
    item_ids: np.ndarray,
    settings: IndexSettings,
    queries: np.ndarray | None = None,
) -> ShardedIndex:
    """Build the sharded index as configured and, given query vectors, tune its ``efSearch``.

    Args:
        vectors: (N, D) item vectors.
        item_ids: (N,) external item ids.
        settings: the ``index`` settings section.
        queries: (Q, D) real query vectors to tune on; without them ``efSearch`` is the
            largest candidate and no recall is recorded.

    Raises:
        RecallTargetNotMet: tuning (:func:`serving_export.index.tuning.tune_ef_search`)
            could not reach ``settings.recall_target``.
    """
    index = build_sharded_hnsw(
        vectors, item_ids, shards=settings.shard_count(len(vectors)), hnsw_m=settings.hnsw_m,
        ef_construction=settings.ef_construction,
        ef_search=settings.ef_search_candidates[-1], threads=settings.threads,
        augment=settings.augment,
    )
    if queries is not None:

        with omp_threads(settings.threads):
            tune_ef_search(
                index, queries, k=settings.recall_k, target=settings.recall_target,
                candidates=settings.ef_search_candidates, sample=settings.tune_queries,
                seed=settings.seed, use_gpu=settings.use_gpu,
            )
    return index
