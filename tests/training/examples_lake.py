"""A tiny lake for the ranker-example and ranking tests: every table the features read.

Dates: candidates of ``D1`` (2024-01-10) are labelled for ``D2`` (2024-01-24) with
``matrix.holdout_days = 2`` and ``ranker.label_days = 14``: the features of ``D1`` read events
up to 2024-01-08, the label window is 2024-01-09 .. 2024-01-22.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from jobs.lake import Lake

D1, D2 = "2024-01-10", "2024-01-24"
TS = pa.timestamp("us", tz="UTC")
MAP = pa.map_(pa.string(), pa.string())
ITEMS = ("i1", "i2", "i3", "i4", "i5", "i6")


def ts(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


# (event_id, user, item, type, value, time)
EVENTS = [
    ("e1", "u1", "i1", "click", None, ts("2024-01-05", 10)),
    ("e2", "u1", "i6", "rating", 4.0, ts("2024-01-06", 10)),
    ("e3", "u2", "i1", "view", 30.0, ts("2024-01-07", 12)),
    ("e4", "u3", "i4", "click", None, ts("2024-01-08", 23)),
    # the label window 2024-01-09 .. 2024-01-22
    ("e5", "u1", "i2", "purchase", None, ts("2024-01-10")),
    ("e6", "u1", "i2", "click", None, ts("2024-01-11")),
    ("e7", "u1", "i3", "view", 12.0, ts("2024-01-12")),
    ("e8", "u1", "i5", "click", None, ts("2024-01-13")),
    ("e9", "u2", "i4", "rating", 3.0, ts("2024-01-14")),
    ("e10", "u3", "i5", "rating", 5.0, ts("2024-01-15")),
    # after the label cutoff
    ("e11", "u2", "i2", "click", None, ts("2024-01-23")),
]
CANDIDATES = {  # user -> [(item, blended score, sources)]
    "u1": [("i1", 0.9, ["ann", "session"]), ("i2", 0.9, ["ann", "session"]),
           ("i3", 0.5, ["content"])],
    "u2": [("i2", 0.8, ["ann"]), ("i4", 0.6, ["popular"])],
    "u3": [("i5", 0.7, ["ann", "content", "popular"])],
}
USER_VECTORS = {"u1": [1.0, 0.0], "u2": [0.0, 1.0], "u3": [1.0, 1.0]}
ITEM_VECTORS = {"i1": [1.0, 1.0], "i2": [0.5, 2.0], "i3": [-1.0, 0.0], "i4": [0.0, 0.0],
                "i5": [2.0, 0.0], "i6": [0.0, 3.0]}
CONTENT = {"i1": [0.0, 1.0, 0.0], "i2": [1.0, 1.0, 0.0], "i3": [0.0, 0.0, 2.0],
           "i4": [0.0, 1.0, 1.0], "i5": [1.0, 0.0, 1.0], "i6": [1.0, 0.0, 0.0]}
COVIS = [("i6", "i2", 0.8), ("i1", "i2", 0.4), ("i1", "i3", 1.0), ("i4", "i5", 0.3)]
POPULARITY = [("all", "i1", 1.0), ("all", "i2", 0.5), ("age=25-34", "i3", 1.0)]
USERS = {"u1": {"age": "30", "gender": "F", "occupation": "writer"},
         "u2": {"age": "17", "gender": "M"},
         "u3": {}}
CATEGORIES = {"i1": ["Drama"], "i2": ["Comedy"], "i3": ["Drama", "War"], "i4": [],
              "i5": ["Horror"], "i6": None}


def _candidates(ds: str, candidates: dict) -> pa.Table:
    rows = [(u, i, s, src, r + 1) for u, lst in candidates.items()
            for r, (i, s, src) in enumerate(lst)]
    n = len(rows)
    return pa.table({
        "user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
        "score": [r[2] for r in rows],
        "ann_score": [None] * n, "content_score": [None] * n, "session_score": [None] * n,
        "popular_score": [None] * n,
        "sources": pa.array([r[3] for r in rows], pa.list_(pa.string())),
        "rank": pa.array([r[4] for r in rows], pa.int32()), "ds": [ds] * n})


def _vectors(ds: str, vectors: dict) -> pa.Table:
    return pa.table({"id": list(vectors),
                     "vector": pa.array(list(vectors.values()), pa.list_(pa.float32())),
                     "model_version": ["als-test"] * len(vectors), "ds": [ds] * len(vectors)})


def write_gold(lake: Lake, ds: str, candidates: dict | None = None) -> None:
    """The gold tables of ``ds`` (candidates, embeddings, content, covisitation,
    popularity), the catalogue snapshots, and the item context built from them."""
    from jobs import item_context

    lake.overwrite_partitions("gold/candidates", _candidates(ds, candidates or CANDIDATES))
    lake.overwrite_partitions("gold/user_embeddings", _vectors(ds, USER_VECTORS))
    lake.overwrite_partitions("gold/item_embeddings", _vectors(ds, ITEM_VECTORS))
    lake.overwrite_partitions("gold/item_content", pa.table({
        "id": list(CONTENT),
        "vector": pa.array([ITEM_VECTORS[i] for i in CONTENT], pa.list_(pa.float32())),
        "content_vector": pa.array(list(CONTENT.values()), pa.list_(pa.float32())),
        "has_cf": [True] * len(CONTENT), "ds": [ds] * len(CONTENT)}))
    lake.overwrite_partitions("gold/covisitation", pa.table({
        "item_id": [c[0] for c in COVIS], "neighbor_id": [c[1] for c in COVIS],
        "score": [c[2] for c in COVIS], "co_count": [1] * len(COVIS),
        "rank": pa.array([1] * len(COVIS), pa.int32()), "ds": [ds] * len(COVIS)}))
    lake.overwrite_partitions("gold/popularity", pa.table({
        "segment": [p[0] for p in POPULARITY], "item_id": [p[1] for p in POPULARITY],
        "score": [p[2] for p in POPULARITY],
        "rank": pa.array([1, 2, 1], pa.int32()), "ds": [ds] * len(POPULARITY)}))
    lake.overwrite_partitions("silver/items", pa.table({
        "item_id": list(ITEMS), "title": [f"title {i}" for i in ITEMS],
        "categories": pa.array([CATEGORIES[i] for i in ITEMS], pa.list_(pa.string())),
        "attributes": pa.array([[]] * len(ITEMS), MAP),
        "available": [True] * len(ITEMS),
        "created_at": pa.array([ts("2023-12-31", 0), ts("2023-12-31", 0), None,
                                ts("2024-01-01", 0), ts("2023-01-10", 0),
                                ts("2024-01-09", 0)], TS),
        "boost": [1.0] * len(ITEMS), "ds": [ds] * len(ITEMS)}))
    lake.overwrite_partitions("silver/users", pa.table({
        "user_id": list(USERS),
        "attributes": pa.array([list(a.items()) for a in USERS.values()], MAP),
        "created_at": pa.array([None] * len(USERS), TS), "ds": [ds] * len(USERS)}))
    item_context.run(None, lake.settings, ds)


def write_events(lake: Lake, events: list | None = None) -> None:
    rows = events or EVENTS
    lake.overwrite_partitions("silver/interactions", pa.table({
        "event_id": [e[0] for e in rows], "user_id": [e[1] for e in rows],
        "item_id": [e[2] for e in rows], "event_type": [e[3] for e in rows],
        "value": pa.array([e[4] for e in rows], pa.float64()),
        "ts": pa.array([e[5] for e in rows], TS), "surface": [None] * len(rows),
        "content_hash": [e[0] for e in rows],
        "event_date": [e[5].date().isoformat() for e in rows]}))
