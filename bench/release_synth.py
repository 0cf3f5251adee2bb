"""Synthetic release data of any size, for tests and the serving benchmark.

Users ``u0000000``..., items ``i00000``...; every user gets ``topn`` distinct items with
descending scores; items get ``similar_k`` similar items; popular lists per segment; random
unit embeddings. Built with numpy and dictionary-encoded Arrow columns, so a million users
take seconds, not a Python loop per row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from serving_export.release.data import Embeddings, GateVerdict, ReleaseData

CATEGORIES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")
SOURCES = ("als", "content", "covis", "popular")


def _ids(prefix: str, n: int, width: int) -> list[str]:
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _dict(indices: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values))


def synthetic_release_data(
    n_users: int,
    n_items: int,
    *,
    topn: int = 100,
    dim: int = 32,
    similar_k: int = 20,
    popular_k: int = 100,
    segments: int = 4,
    surfaces: tuple[str, ...] = ("home_feed", "email"),
    ds: str = "2024-01-01",
    seed: int = 0,
    listed_users: int | None = None,
    surface_topn: dict[str, int] | None = None,
    vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> ReleaseData:
    """A full release's data.

    Args:
        n_users: U; n_items: I (> topn, similar_k and popular_k).
        topn: items per user and surface; dim: embedding dimensions (0: none).
        similar_k: similar items per item; popular_k: items per popular list.
        segments: user segments (each with its own popular list, plus the overall one).
        surfaces: top-N surfaces; ds: logical date; seed: random seed.
        listed_users: only users ``0..listed_users-1`` get precomputed lists (default all),
            as when precompute is limited to the most active users.
        surface_topn: items per user of a surface, where not ``topn``.
        vectors: ``(items (I, D), users (U, D))`` to use instead of random unit vectors.

    Raises:
        ValueError: ``n_items`` is not larger than the list lengths.
    """
    if n_items <= max(topn, similar_k, popular_k):
        raise ValueError(f"n_items ({n_items}) must exceed topn ({topn}), similar_k "
                         f"({similar_k}) and popular_k ({popular_k})")
    rng = np.random.default_rng(seed)
    user_ids = _ids("u", n_users, 7)
    item_ids = _ids("i", n_items, 5)
    stride = 7 if np.gcd(7, n_items) == 1 else 1

    def lists(n_groups: int, k: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
        start = rng.integers(0, n_items, size=n_groups, dtype=np.int64)
        items = (start[:, None] + salt + stride * np.arange(k)[None, :]) % n_items
        scores = np.sort(rng.random((n_groups, k), dtype=np.float32), axis=1)[:, ::-1]
        return items.astype(np.int32).ravel(), np.ascontiguousarray(scores).ravel()

    topn_tables = {}
    listed = n_users if listed_users is None else listed_users
    for s, surface in enumerate(surfaces):
        width = (surface_topn or {}).get(surface, topn)
        group = np.repeat(np.arange(listed, dtype=np.int32), width)
        items, scores = lists(listed, width, s)
        src = rng.integers(0, len(SOURCES), size=len(items), dtype=np.int32)
        topn_tables[surface] = pa.table({
            "user_id": _dict(group, user_ids), "item_id": _dict(items, item_ids),
            "score": scores, "sources": _dict(src, list(SOURCES)),
        })
    sim_items, sim_scores = lists(n_items, similar_k, 1)
    own = np.repeat(np.arange(n_items, dtype=np.int32), similar_k)
    same = sim_items == own
    sim_items[same] = (sim_items[same] + 1) % n_items
    similar = pa.table({"item_id": _dict(own, item_ids),
                        "similar_item_id": _dict(sim_items, item_ids), "score": sim_scores})
    seg_names = [f"seg{k}" for k in range(segments)]
    pop_items, pop_scores = lists(segments + 1, popular_k, 2)
    pop_seg = [None] * popular_k + [name for name in seg_names for _ in range(popular_k)]
    popularity = pa.table({"segment": pa.array(pop_seg, pa.string()),
                           "item_id": _dict(pop_items, item_ids), "score": pop_scores})
    cats = rng.integers(0, len(CATEGORIES), size=(n_items, 2))
    items_table = pa.table({
        "item_id": item_ids,
        "title": [f"Item {i}" for i in range(n_items)],
        "categories": [[CATEGORIES[a], CATEGORIES[b]] if a != b else [CATEGORIES[a]]
                       for a, b in cats.tolist()],
        "available": rng.random(n_items) > 0.02,
        "boost": np.ones(n_items, dtype=np.float32),
    })
    user_seg = rng.integers(0, segments, size=n_users)
    users_table = pa.table({"user_id": pa.array(user_ids),
                            "segment": _dict(user_seg, seg_names)})
    user_emb = item_emb = None
    if vectors is not None:
        user_emb, item_emb = Embeddings(user_ids, vectors[1]), Embeddings(item_ids, vectors[0])
    elif dim:
        uv = rng.standard_normal((n_users, dim), dtype=np.float32)
        iv = rng.standard_normal((n_items, dim), dtype=np.float32)
        uv /= np.linalg.norm(uv, axis=1, keepdims=True)
        iv /= np.linalg.norm(iv, axis=1, keepdims=True)
        user_emb, item_emb = Embeddings(user_ids, uv), Embeddings(item_ids, iv)
    return ReleaseData(
        ds=ds, gate=GateVerdict(True, ("synthetic",)), topn=topn_tables,
        similar_items=similar, popularity=popularity, items=items_table, users=users_table,
        user_embeddings=user_emb, item_embeddings=item_emb,
        model_versions={"ranker": "synthetic"}, metrics={},
    )


def tiny_release_data(*, boost_i5: float = 1.0, score_shift: float = 0.0,
                      ds: str = "2024-01-01", gate_passed: bool = True) -> ReleaseData:
    """A hand-checkable release: 8 items, users alice, bob, carol.

    - items i1..i8; categories i1 comedy, i2 drama, i3 comedy+drama, i4 horror (unavailable),
      i5 comedy (boost ``boost_i5``), i6 drama, i7 horror, i8 comedy.
    - home_feed: alice i1 .9, i2 .8, i3 .7, i4 .6, i5 .5, i6 .4; bob i3 .9, i1 .8.
      email: alice i6 .9, i5 .8. (``score_shift`` is added to every top-N score.)
    - similar: i1 -> i5 .9, i8 .8, i2 .7; i2 -> i6 .9, i3 .5.
    - popular: overall i7 10, i8 9, i1 8, i2 7; segment young: i8 5, i6 4.
    - users: alice (young, bought i2), carol (young, no lists); bob has no metadata.
    - embeddings (D=2): alice [1, 0], bob [0, 1]; i1 [1, 0], i2 [.5, .5], i3 [0, 1],
      i5 [.2, 0].
    """
    home = [("alice", "i1", .9), ("alice", "i2", .8), ("alice", "i3", .7), ("alice", "i4", .6),
            ("alice", "i5", .5), ("alice", "i6", .4), ("bob", "i3", .9), ("bob", "i1", .8)]
    email = [("alice", "i6", .9), ("alice", "i5", .8)]

    def table(rows: list[tuple[str, str, float]]) -> pa.Table:
        return pa.table({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                         "score": [r[2] + score_shift for r in rows],
                         "sources": [["als"] if k % 2 == 0 else ["als", "covis"]
                                     for k in range(len(rows))]})

    categories = [["comedy"], ["drama"], ["comedy", "drama"], ["horror"], ["comedy"], ["drama"],
                  ["horror"], ["comedy"]]
    items = pa.table({
        "item_id": [f"i{k}" for k in range(1, 9)],
        "title": [f"Item {k}" for k in range(1, 9)],
        "categories": categories,
        "available": [k != 4 for k in range(1, 9)],
        "boost": [boost_i5 if k == 5 else 1.0 for k in range(1, 9)],
    })
    return ReleaseData(
        ds=ds, gate=GateVerdict(gate_passed, () if gate_passed else ("ndcg dropped",)),
        topn={"home_feed": table(home), "email": table(email)},
        similar_items=pa.table({"item_id": ["i1", "i1", "i1", "i2", "i2"],
                                "similar_item_id": ["i5", "i8", "i2", "i6", "i3"],
                                "score": [.9, .8, .7, .9, .5]}),
        popularity=pa.table({"segment": [None, None, None, None, "young", "young"],
                             "item_id": ["i7", "i8", "i1", "i2", "i8", "i6"],
                             "score": [10., 9., 8., 7., 5., 4.]}),
        items=items,
        users=pa.table({"user_id": ["alice", "carol"], "segment": ["young", "young"],
                        "purchased": [["i2"], []]}),
        user_embeddings=Embeddings(["alice", "bob"], np.array([[1, 0], [0, 1]], np.float32)),
        item_embeddings=Embeddings(["i1", "i2", "i3", "i5"],
                                   np.array([[1, 0], [.5, .5], [0, 1], [.2, 0]], np.float32)),
        model_versions={"ranker": "3"}, table_versions={"gold/topn": 7},
        metrics={"ndcg@10": 0.41},
    )


def with_faiss(data: ReleaseData, folder: str | Path, *, shards: int = 2, hnsw_m: int = 32,
               ef_construction: int = 200, ef_search: int = 256) -> ReleaseData:
    """``data`` with a sharded HNSW index over its item embeddings (ids: their rows, as the
    exporter builds it) written under ``folder`` and named as its ``faiss_dir``.

    Raises:
        ValueError: ``data`` has no item embeddings.
    """
    from serving_export.index.build import build_sharded_hnsw

    if data.item_embeddings is None:
        raise ValueError("with_faiss needs item embeddings")
    vectors = np.asarray(data.item_embeddings.vectors, dtype=np.float32)
    index = build_sharded_hnsw(vectors, np.arange(len(vectors), dtype=np.int64), shards=shards,
                               hnsw_m=hnsw_m, ef_construction=ef_construction,
                               ef_search=ef_search)
    data.faiss_dir = index.save(Path(folder) / "faiss")
    return data
