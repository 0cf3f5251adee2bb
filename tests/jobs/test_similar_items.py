"""Similar items (cosine of item vectors plus weighted co-visitation), vectorized, against
the per-item loop they were first written as."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.topk import topk_inner_product
from conf.recs import SimilarSettings
from jobs.retrieval import RetrievalContext
from jobs.topn import similar_items

COVIS_WEIGHT = SimilarSettings().covis_weight


def reference(ctx: RetrievalContext, k: int) -> list[tuple[str, int, str, float]]:
    unit = ctx.item_vectors / np.maximum(
        np.linalg.norm(ctx.item_vectors, axis=1, keepdims=True), 1e-12)
    rows = np.flatnonzero(np.linalg.norm(ctx.item_vectors, axis=1) > 0)
    n = len(ctx.item_ids)
    self_loops = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                               shape=(len(rows), n))
    ids, sims = topk_inner_product(unit[rows], unit, min(k, len(rows) - 1),
                                   exclude=self_loops)
    covis = ctx.neighbours[rows]
    out = []
    for r, item_row in enumerate(rows):
        scores = {int(j): float(s) for j, s in zip(ids[r], sims[r], strict=True) if j >= 0}
        lo, hi = covis.indptr[r], covis.indptr[r + 1]
        for j, s in zip(covis.indices[lo:hi], covis.data[lo:hi], strict=True):
            if j != item_row:
                scores[int(j)] = scores.get(int(j), 0.0) + COVIS_WEIGHT * float(s)
        best = sorted(scores, key=lambda j: (-scores[j], ctx.item_ids[j]))[:k]
        out += [(ctx.item_ids[item_row], rank, ctx.item_ids[j], scores[j])
                for rank, j in enumerate(best, 1)]
    return out


def context(seed: int, n: int = 120, dim: int = 8) -> RetrievalContext:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[rng.choice(n, 10, replace=False)] = 0.0  # items without a vector get no list
    graph = sp.random(n, n, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    graph.setdiag(0.7)  # self loops are never neighbours
    return RetrievalContext(
        item_ids=np.array([f"i{j:04d}" for j in range(n)], dtype=object),
        item_vectors=vectors, content=np.zeros((n, 4), np.float32),
        neighbours=graph.tocsr(), popular={"all": (np.arange(3), np.ones(3))})


def as_rows(table):
    return list(zip(table.column("item_id").to_pylist(), table.column("rank").to_pylist(),
                    table.column("similar_item_id").to_pylist(),
                    table.column("score").to_pylist(), strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_similar_items_match_the_per_item_loop(seed):
    ctx = context(seed)
    got = similar_items(ctx, SimilarSettings(k=15))
    rows = as_rows(got)
    want = reference(ctx, 15)
    assert [r[:3] for r in rows] == [w[:3] for w in want]
    np.testing.assert_allclose([r[3] for r in rows], [w[3] for w in want], rtol=1e-6)
    assert all(a != b for a, _, b, _ in rows)


def test_k_comes_from_the_settings():
    ctx = context(0)
    per_item = similar_items(ctx, SimilarSettings(k=40)).group_by("item_id").aggregate(
        [("rank", "max")]).column("rank_max").to_pylist()
    assert max(per_item) == 40 and len(per_item) == 110


def test_large_catalogues_search_a_graph_and_find_the_same_neighbours():
    """Above ``exact_max_items`` an HNSW graph replaces the all-pairs search: no item is its
    own neighbour, and the lists match the exact ones on at least 95% of their items."""
    ctx = context(3, n=2000, dim=16)
    exact = similar_items(ctx, SimilarSettings(k=20, covis_weight=0.0))
    graph = similar_items(ctx, SimilarSettings(k=20, covis_weight=0.0, exact_max_items=100))
    assert all(a != b for a, _, b, _ in as_rows(graph))
    assert graph.num_rows == exact.num_rows
    pairs = set(zip(exact.column("item_id").to_pylist(),
                    exact.column("similar_item_id").to_pylist(), strict=True))
    found = set(zip(graph.column("item_id").to_pylist(),
                    graph.column("similar_item_id").to_pylist(), strict=True))
    assert len(pairs & found) / len(pairs) >= 0.95
