"""``recpipe candidates``: multi-strategy candidates per user -> ``gold/candidates/ds=``.

The driver assembles a :class:`~jobs.retrieval.RetrievalContext` (item vectors, content
vectors, the item-to-item graph, popular lists) from the gold tables of ``ds`` and broadcasts
it; Spark builds one row per user (vector, recent items, excluded items, segment) and runs
:func:`jobs.retrieval.retrieve` over blocks of users on the executors (``mapInArrow``), so the
work scales out with the number of users.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from algorithms.segments import ALL, segment_of
from algorithms.topk import topk_inner_product
from algorithms.window import dates_between, training_window
from conf import Settings
from conf.recs import CandidateSettings
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.retrieval import RetrievalContext, UserBlock, retrieve
from jobs.spark_arrow import arrow_schema_to_spark
from jobs.tables import (
    CANDIDATE_FIELDS,
    CANDIDATES,
    COVISITATION,
    ITEM_CONTENT,
    ITEM_EMBEDDINGS,
    POPULARITY,
    SILVER_INTERACTIONS,
    SILVER_ITEMS,
    SILVER_USERS,
    USER_EMBEDDINGS,
)

log = logging.getLogger(__name__)

EMBEDDING_NEIGHBOURS = 20
"""Embedding neighbours per item added to the co-visitation graph for session retrieval."""


def _vectors(table: pa.Table, column: str = "vector") -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, 0), np.float32)
    flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(table.num_rows, -1)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def item_graph(item_vectors: np.ndarray, has_cf: np.ndarray, covis: sp.csr_matrix,
               k: int = EMBEDDING_NEIGHBOURS) -> sp.csr_matrix:
    """Item-to-item graph: co-visitation scores plus the cosine of each CF item's ``k``
    nearest embedding neighbours (both in ``[0, 1]``-ish scales, summed)."""
    n = item_vectors.shape[0]
    rows = np.flatnonzero(has_cf)
    if len(rows) < 2:
        return covis
    unit = _normalise(item_vectors[rows])
    self_loops = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), np.arange(len(rows)))),
                               shape=(len(rows), len(rows)))
    ids, sims = topk_inner_product(unit, unit, min(k, len(rows) - 1), exclude=self_loops)
    valid = (ids >= 0) & (sims > 0)
    r = np.repeat(rows, ids.shape[1])[valid.ravel()]
    c = rows[ids[valid]]
    emb = sp.csr_matrix((sims[valid].astype(np.float32), (r, c)), shape=(n, n))
    return (covis + emb).tocsr()


def build_context(lake: Lake, ds: str, settings: Settings) -> RetrievalContext:
    """Read the gold tables of ``ds`` and assemble the retrieval context (driver side)."""
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    catalogue = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                                columns=["item_id"]).column("item_id").to_pylist()
    emb = lake.read_arrow(ITEM_EMBEDDINGS.name, [ds], columns=["id", "vector"])
    content = lake.read_arrow(ITEM_CONTENT.name, [ds],
                              columns=["id", "vector", "content_vector"])
    item_ids = np.array(sorted(set(catalogue) | set(emb.column("id").to_pylist())), dtype=object)
    row_of = {item: i for i, item in enumerate(item_ids)}
    n = len(item_ids)
    cf = _vectors(emb)
    dim = cf.shape[1] if cf.size else settings.als.factors
    vectors = np.zeros((n, dim), np.float32)
    has_cf = np.zeros(n, bool)
    if emb.num_rows:
        rows = np.array([row_of[i] for i in emb.column("id").to_pylist()])
        vectors[rows], has_cf[rows] = cf, True
    content_vecs = np.zeros((n, 1), np.float32)
    if content.num_rows:
        rows = np.array([row_of.get(i, -1) for i in content.column("id").to_pylist()])
        keep = rows >= 0
        mapped = _vectors(content.filter(pa.array(keep)))
        cold = keep.copy()
        cold[keep] = ~has_cf[rows[keep]]
        if mapped.size and mapped.shape[1] == dim:
            # cold items (no CF vector) are retrieved through their content-mapped vector
            vectors[rows[cold]] = mapped[cold[keep]]
        column = "content_vector" if content.column("content_vector").null_count == 0 \
            else "vector"
        raw = _vectors(content.filter(pa.array(keep)), column)
        content_vecs = np.zeros((n, raw.shape[1]), np.float32)
        content_vecs[rows[keep]] = _normalise(raw)
    covis_t = lake.read_arrow(COVISITATION.name, [ds],
                              columns=["item_id", "neighbor_id", "score"])
    pairs = [(row_of.get(a), row_of.get(b), s) for a, b, s in zip(
        covis_t.column("item_id").to_pylist(), covis_t.column("neighbor_id").to_pylist(),
        covis_t.column("score").to_pylist(), strict=True)]
    pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
    covis = sp.csr_matrix(([p[2] for p in pairs], ([p[0] for p in pairs], [p[1] for p in pairs])),
                          shape=(n, n), dtype=np.float32)
    popular = popular_lists(lake.read_arrow(POPULARITY.name, [ds]), row_of,
                            settings.candidates.segment_weight)
    return RetrievalContext(item_ids=item_ids, item_vectors=vectors, content=content_vecs,
                            neighbours=item_graph(vectors, has_cf, covis), popular=popular)


def popular_lists(pop: pa.Table, row_of: dict[str, int], segment_weight: float = 1.0
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """segment -> (item rows, scores) best first, from ``gold/popularity`` rows.

    A segment's list scores each item ``segment_weight * segment score + (1 -
    segment_weight) * overall score`` (both normalised to 1 at the top), so small segments
    lean on the overall list instead of their own noise.
    """
    scores: dict[str, dict[int, float]] = {}
    for r in pop.to_pylist():
        if r["item_id"] in row_of:
            scores.setdefault(r["segment"], {})[row_of[r["item_id"]]] = float(r["score"])
    overall = scores.get(ALL, {})
    lists = {}
    for segment, own in scores.items():
        if segment == ALL:
            blended = own
        else:
            blended = {i: segment_weight * own.get(i, 0.0)
                       + (1 - segment_weight) * overall.get(i, 0.0)
                       for i in set(own) | set(overall)}
        order = sorted(blended, key=lambda i: (-blended[i], i))
        lists[segment] = (np.array(order, np.int64),
                          np.array([blended[i] for i in order], np.float32))
    lists.setdefault(ALL, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
    return lists


def user_rows(events: DataFrame, cfg: CandidateSettings) -> DataFrame:
    """Per user: ``history`` (last ``cfg.history_items`` distinct items, most recent first)
    and ``excluded`` (items with an event of a type in ``cfg.exclude_event_types``)."""
    pairs = events.groupBy("user_id", "item_id").agg(
        F.max("ts").alias("t"), F.collect_set("event_type").alias("types"))
    excluded_types = F.array(*[F.lit(t) for t in cfg.exclude_event_types]) \
        if cfg.exclude_event_types else F.array().cast("array<string>")
    return pairs.groupBy("user_id").agg(
        F.slice(F.sort_array(F.collect_list(F.struct(F.col("t"), F.col("item_id"))),
                             asc=False), 1, cfg.history_items).getField("item_id")
        .alias("history"),
        F.collect_list(F.when(F.arrays_overlap("types", excluded_types), F.col("item_id")))
        .alias("excluded"),
    )


def candidate_blocks(batches, ctx: RetrievalContext, cfg: CandidateSettings):
    """``mapInArrow`` body: user rows in, candidate rows out, ``cfg.user_block`` at a time."""
    dim = ctx.item_vectors.shape[1]
    for batch in batches:
        for start in range(0, batch.num_rows, cfg.user_block):
            part = batch.slice(start, cfg.user_block).to_pylist()
            vecs = np.full((len(part), dim), np.nan, np.float32)
            for i, row in enumerate(part):
                if row["vector"] is not None and len(row["vector"]) == dim:
                    vecs[i] = row["vector"]

            def rows(items):
                return np.array([ctx.row_of[x] for x in (items or []) if x in ctx.row_of],
                                np.int64)

            block = UserBlock(
                user_ids=[r["user_id"] for r in part], vectors=vecs,
                history=[rows(r["history"]) for r in part],
                excluded=[rows(r["excluded"]) for r in part],
                segments=[r["segment"] or ALL for r in part])
            yield from retrieve(ctx, block, cfg).to_batches()


def transform(users: DataFrame, ctx_broadcast, cfg: CandidateSettings, ds: str) -> DataFrame:
    """Candidates for every row of ``users`` (``user_id, vector, history, excluded,
    segment``) with the broadcast retrieval context."""
    schema = arrow_schema_to_spark(pa.schema(CANDIDATE_FIELDS))

    def body(batches):
        yield from candidate_blocks(batches, ctx_broadcast.value, cfg)

    return users.mapInArrow(body, schema).withColumn("ds", F.lit(ds))


def segments_frame(spark: SparkSession, lake: Lake, settings: Settings, ds: str) -> DataFrame:
    users_ds = latest_partition_at_or_before(lake, SILVER_USERS.name, ds)
    users = lake.read_arrow(SILVER_USERS.name, [users_ds] if users_ds else [],
                            columns=["user_id", "attributes"]).to_pylist()
    rules = settings.popularity.segments
    rows = [(u["user_id"], segment_of(dict(u["attributes"] or []), rules)) for u in users]
    return spark.createDataFrame(rows, "user_id string, segment string")


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/candidates/ds=<ds>`` for every known user."""
    lake = Lake(settings)
    cfg = settings.candidates
    ctx = build_context(lake, ds, settings)
    first, cutoff = training_window(settings, ds)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, cutoff)
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    history = user_rows(events, cfg)
    vectors = lake.read_spark(spark, USER_EMBEDDINGS.name, [ds]).select(
        F.col("id").alias("user_id"), "vector")
    users = (segments_frame(spark, lake, settings, ds)
             .join(history, "user_id", "full").join(vectors, "user_id", "left")
             .repartition(max(1, settings.spark.shuffle_partitions), "user_id"))
    cands = transform(users, spark.sparkContext.broadcast(ctx), cfg, ds)
    version = lake.write_spark(CANDIDATES.name, cands, [ds])
    stats = lake.read_arrow(CANDIDATES.name, [ds], columns=["user_id", "sources"])
    per_source: dict[str, int] = {}
    for srcs in stats.column("sources").to_pylist():
        for s in srcs:
            per_source[s] = per_source.get(s, 0) + 1
    users_n = len(set(stats.column("user_id").to_pylist()))
    return {"ds": ds, "rows": stats.num_rows, "users": users_n, "items": len(ctx.item_ids),
            "found_by": per_source, "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe candidates",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    print(json.dumps(run(get_spark(settings), settings, args.ds)))
    return 0
