"""Tuning ``efSearch`` of a sharded HNSW index against exact inner-product search.

Shapes: N items, D dimensions, Q queries, k results.

The truth is ``IndexFlatIP`` over the index's own vectors; recall@k is the mean share of each
query's exact top-k that the index returns. ``efSearch`` is raised through an increasing list
until the configured recall is met on a sample of real query vectors, or
:class:`~serving_export.faiss_errors.RecallTargetNotMet` names the best value reached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faiss
import numpy as np

from algorithms.topk import as_vectors
from conf.errors import RecallTargetNotMet
from evaluation.metrics import ann_recall
from serving_export.index.shards import ShardedIndex, Tuning, to_gpu

logger = logging.getLogger(__name__)


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, use_gpu: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows by inner product with ``IndexFlatIP`` (the ANN ground truth).

    Returns:
        ``(rows, scores)``: (Q, k) int64 row numbers of ``vectors`` (-1 past N) and scores.
    """
    x = as_vectors(vectors, "vectors")
    flat = faiss.IndexFlatIP(x.shape[1])
    keep: list[object] = []
    if use_gpu:
        flat = to_gpu(flat, "the exact index", keep)
    flat.add(x)
    scores, rows = flat.search(as_vectors(queries, "queries"), k)
    return rows.astype(np.int64), scores


def tune_ef_search(
    index: ShardedIndex,
    queries: np.ndarray,
    k: int,
    target: float,
    candidates: Sequence[int],
    sample: int,
    seed: int,
    use_gpu: bool = False,
) -> Tuning:
    """Raise ``efSearch`` through ``candidates`` until recall@``k`` reaches ``target``.

    The truth is exact inner-product search (``IndexFlatIP``) over the index's own vectors,
    for ``sample`` query vectors drawn without replacement (with ``seed``) from ``queries``.
    On success the index's ``ef_search`` and ``tuning`` are set.

    Args:
        index: the sharded index to tune (changed in place on success).
        queries: (Q, D) real query vectors (e.g. user embeddings).
        k: the recall's k (capped at N).
        target: the recall to reach, e.g. 0.98.
        candidates: increasing ``efSearch`` values to try.
        sample: how many queries to measure on (all if fewer).
        seed: seed of the query sample.
        use_gpu: run the exact search on the GPU where FAISS can.

    Returns:
        The chosen ``efSearch``, its recall, and the recall of each value tried.

    Raises:
        RecallTargetNotMet: no candidate reached ``target`` (the best one is named).
        ValueError: empty or non-increasing candidates, ``k``/``sample`` < 1, no queries.
    """
    q = as_vectors(queries, "queries")
    if not candidates or any(b <= a for a, b in zip(candidates, candidates[1:], strict=False)):
        raise ValueError(f"candidates must be non-empty and increasing, got {list(candidates)}")
    if candidates[0] < 1 or k < 1 or sample < 1 or q.shape[0] == 0:
        raise ValueError(f"need efSearch >= 1, k >= 1, sample >= 1 and queries; got "
                         f"{candidates[0]}, {k}, {sample}, {q.shape[0]} queries")
    rng = np.random.default_rng(seed)
    picked = q[np.sort(rng.choice(q.shape[0], size=min(sample, q.shape[0]), replace=False))]
    vectors, ids = index.vectors()
    k = min(k, index.ntotal)
    rows, _ = exact_search(vectors, picked, k, use_gpu=use_gpu)
    truth = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
    measured: dict[int, float] = {}
    for ef in candidates:
        found, _ = index.search(picked, k, ef_search=ef)
        measured[int(ef)] = round(ann_recall(found, truth), 6)
        logger.info("efSearch %d: recall@%d %.4f on %d queries", ef, k, measured[ef], len(picked))
        if measured[ef] >= target:
            tuning = Tuning(int(ef), measured[ef], k, len(picked), target, measured)
            index.ef_search, index.tuning = int(ef), tuning
            return tuning
    raise RecallTargetNotMet(target, measured)
