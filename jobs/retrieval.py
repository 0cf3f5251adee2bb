"""Multi-strategy candidate retrieval for a block of users: pure numpy, no Spark, no paths.

Shapes: ``B`` users in the block, ``N`` items, ``D`` CF dimensions, ``C`` content dimensions,
``K`` candidates per strategy.

Strategies (each gives up to ``per_strategy[s]`` items per user, never an excluded one):

- ``ann``: inner product of the user vector with the item vectors (exact blocked top-k for
  catalogues up to ``exact_max_items``, the sharded HNSW index beyond).
- ``content``: cosine of the recency-weighted mean content vector of the user's recent
  items with every item's content vector (finds cold items: they have content vectors).
- ``session``: neighbours of the user's last items in the item-to-item graph (co-visitation
  merged with embedding neighbours), summed with recency weights ``1 / (1 + position)``.
- ``popular``: the user's segment's popular list (overall list for unknown segments).

Merging deduplicates (user, item) pairs, keeps each strategy's score and a bit mask of the
strategies that found the item, and orders a user's candidates by a blend of rank-normalised
strategy scores: ``sum_s w_s * (1 - rank_s / K_s)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from algorithms.topk import topk_inner_product
from conf.recs import STRATEGIES, CandidateSettings
from jobs.tables import CANDIDATE_FIELDS

BITS = {name: 1 << i for i, name in enumerate(STRATEGIES)}


@dataclass
class RetrievalContext:
    """Everything a user block needs, built once per run and shared by all blocks.

    Attributes:
        item_ids: (N,) external item ids; row ``i`` of every matrix below is item ``i``.
        item_vectors: (N, D) float32 CF vectors (cold items: their content-mapped vector).
        content: (N, C) float32 L2-normalised content vectors.
        neighbours: (N, N) sparse item-to-item scores (row: item, columns: its neighbours).
        popular: segment -> (item rows (P,), scores (P,)) best first; must hold ``"all"``.
        index: optional sharded ANN index over ``item_vectors`` whose external ids are rows.
    """

    item_ids: np.ndarray
    item_vectors: np.ndarray
    content: np.ndarray
    neighbours: sp.csr_matrix
    popular: Mapping[str, tuple[np.ndarray, np.ndarray]]
    index: object | None = None
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name, arr in (("item_vectors", self.item_vectors), ("content", self.content)):
            if arr.shape[0] != n:
                raise ValueError(f"{name} has {arr.shape[0]} rows for {n} items")
        if self.neighbours.shape != (n, n):
            raise ValueError(f"neighbours has shape {self.neighbours.shape}, want ({n}, {n})")
        if "all" not in self.popular:
            raise ValueError("popular lists need the overall segment 'all'")
        self.row_of = {str(item): i for i, item in enumerate(self.item_ids)}


@dataclass
class UserBlock:
    """A block of users: ids, vectors (NaN rows for users without one), recent item rows
    (most recent first), excluded item rows and segments."""

    user_ids: Sequence[str]
    vectors: np.ndarray
    history: list[np.ndarray]
    excluded: list[np.ndarray]
    segments: Sequence[str]


def _csr(rows: list[np.ndarray], n_cols: int, weights: list[np.ndarray] | None = None
         ) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    data = (np.concatenate(weights).astype(np.float32) if weights is not None
            else np.ones(len(indices), np.float32))
    out = sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))
    out.sum_duplicates()
    return out


def recency_weights(length: int) -> np.ndarray:
    """Weights ``1 / (1 + position)`` for a history ordered most recent first."""
    return 1.0 / (1.0 + np.arange(length, dtype=np.float32))


def _top_of_sparse(scores: sp.csr_matrix, exclude: sp.csr_matrix, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k stored entries per row of a sparse score matrix, excluding ``exclude``."""
    scores = scores.tocsr().copy()
    scores.sum_duplicates()
    masked = scores.multiply(exclude.astype(bool)).tocsr()
    scores = (scores - masked).tocsr()
    scores.eliminate_zeros()
    ids = np.full((scores.shape[0], k), -1, np.int64)
    vals = np.full((scores.shape[0], k), -np.inf, np.float32)
    for r in range(scores.shape[0]):
        lo, hi = scores.indptr[r], scores.indptr[r + 1]
        if hi == lo:
            continue
        cols, data = scores.indices[lo:hi], scores.data[lo:hi]
        order = np.lexsort((cols, -data))[:k]
        ids[r, : len(order)], vals[r, : len(order)] = cols[order], data[order]
    return ids, vals


def _ann(ctx: RetrievalContext, block: UserBlock, exclude: sp.csr_matrix, k: int,
         cfg: CandidateSettings) -> tuple[np.ndarray, np.ndarray]:
    has = ~np.isnan(block.vectors).any(axis=1)
    ids = np.full((len(block.user_ids), k), -1, np.int64)
    vals = np.full((len(block.user_ids), k), -np.inf, np.float32)
    if not has.any():
        return ids, vals
    queries = block.vectors[has]
    if ctx.index is not None and len(ctx.item_ids) > cfg.exact_max_items:
        extra = int(max(np.diff(exclude.indptr).max(initial=0), 0))
        found, scores = ctx.index.search(queries, k + extra)
        rows = exclude[has]
        for r in range(found.shape[0]):  # drop excluded ids, keep order
            bad = set(rows.indices[rows.indptr[r]:rows.indptr[r + 1]].tolist())
            keep = [j for j in range(found.shape[1]) if found[r, j] >= 0
                    and found[r, j] not in bad][:k]
            found[r, : len(keep)], scores[r, : len(keep)] = found[r, keep], scores[r, keep]
            found[r, len(keep):], scores[r, len(keep):] = -1, -np.inf
        ids[has], vals[has] = found[:, :k], scores[:, :k]
    else:
        ids[has], vals[has] = topk_inner_product(queries, ctx.item_vectors, k,
                                                 exclude=exclude[has], threads=1)
    return ids, vals


def _content(ctx: RetrievalContext, block: UserBlock, exclude: sp.csr_matrix, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    weights = [recency_weights(len(h)) for h in block.history]
    hist = _csr(block.history, len(ctx.item_ids), weights)
    profile = np.asarray(hist @ ctx.content, dtype=np.float32)
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    has = norms[:, 0] > 0
    ids = np.full((len(block.user_ids), k), -1, np.int64)
    vals = np.full((len(block.user_ids), k), -np.inf, np.float32)
    if has.any():
        ids[has], vals[has] = topk_inner_product(profile[has] / norms[has], ctx.content, k,
                                                 exclude=exclude[has], threads=1)
    return ids, vals


def _session(ctx: RetrievalContext, block: UserBlock, exclude: sp.csr_matrix, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    weights = [recency_weights(len(h)) for h in block.history]
    hist = _csr(block.history, len(ctx.item_ids), weights)
    return _top_of_sparse(hist @ ctx.neighbours, exclude, k)


def _popular(ctx: RetrievalContext, block: UserBlock, exclude: sp.csr_matrix, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(block.user_ids), k), -1, np.int64)
    vals = np.full((len(block.user_ids), k), -np.inf, np.float32)
    for r, segment in enumerate(block.segments):
        rows, scores = ctx.popular.get(segment, ctx.popular["all"])
        bad = exclude.indices[exclude.indptr[r]:exclude.indptr[r + 1]]
        keep = ~np.isin(rows, bad)
        take = rows[keep][:k]
        ids[r, : len(take)], vals[r, : len(take)] = take, scores[keep][:k]
    return ids, vals


RETRIEVERS = {"content": _content, "session": _session, "popular": _popular}


def retrieve(ctx: RetrievalContext, block: UserBlock, cfg: CandidateSettings) -> pa.Table:
    """Candidates for one block of users.

    Returns:
        Arrow table ``user_id, item_id, score, ann_score, content_score, session_score,
        popular_score, sources (list<string>), rank`` (rank 1 = best blend), at most
        ``cfg.per_user`` rows per user.
    """
    n_items = len(ctx.item_ids)
    exclude = _csr(block.excluded, n_items)
    parts = []
    for name in STRATEGIES:
        k = min(cfg.per_strategy.get(name, 0), n_items)
        if k == 0:
            continue
        if name == "ann":
            ids, vals = _ann(ctx, block, exclude, k, cfg)
        else:
            ids, vals = RETRIEVERS[name](ctx, block, exclude, k)
        rows, cols = np.nonzero(ids >= 0)
        norm = 1.0 - cols.astype(np.float64) / k
        parts.append((name, rows, ids[rows, cols], vals[rows, cols], norm))
    return merge(block.user_ids, ctx.item_ids, parts, cfg)


def merge(user_ids: Sequence[str], item_ids: np.ndarray,
          parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
          cfg: CandidateSettings) -> pa.Table:
    """Deduplicate (user, item) pairs found by several strategies and rank them by blend.

    Args:
        parts: per strategy ``(name, user_rows, item_rows, raw_scores, normalised_scores)``.
    """
    n_items = len(item_ids)
    if not parts or all(len(p[1]) == 0 for p in parts):
        return empty_candidates()
    keys = np.concatenate([p[1].astype(np.int64) * n_items + p[2] for p in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    blend = np.zeros(len(uniq))
    mask = np.zeros(len(uniq), np.int64)
    raw = {name: np.full(len(uniq), np.nan) for name in STRATEGIES}
    offset = 0
    for name, rows, _, vals, norm in parts:
        idx = inverse[offset: offset + len(rows)]
        offset += len(rows)
        np.add.at(blend, idx, cfg.blend_weights.get(name, 0.0) * norm)
        np.bitwise_or.at(mask, idx, BITS[name])
        raw[name][idx] = vals
    users, items = uniq // n_items, uniq % n_items
    order = np.lexsort((items, -blend, users))
    users, items, blend, mask = users[order], items[order], blend[order], mask[order]
    for name in STRATEGIES:
        raw[name] = raw[name][order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)])) + 1
    keep = rank <= cfg.per_user
    return pa.table({
        "user_id": pa.array(np.asarray(user_ids, dtype=object)[users[keep]], pa.string()),
        "item_id": pa.array(np.asarray(item_ids, dtype=object)[items[keep]], pa.string()),
        "score": pa.array(blend[keep]),
        **{f"{name}_score": pa.array(raw[name][keep], from_pandas=True)
           for name in STRATEGIES},
        "sources": sources_array(mask[keep]),
        "rank": pa.array(rank[keep].astype(np.int32)),
    })


def sources_array(mask: np.ndarray) -> pa.ListArray:
    """``list<string>`` of strategy names from bit masks (in ``STRATEGIES`` order)."""
    names = [[n for n in STRATEGIES if m & BITS[n]] for m in range(1 << len(STRATEGIES))]
    lengths = np.array([len(n) for n in names])[mask]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    flat = [n for m in mask for n in names[m]]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.string()))




def empty_candidates() -> pa.Table:
    return pa.schema(CANDIDATE_FIELDS).empty_table()
