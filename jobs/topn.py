"""``recpipe topn``: candidates -> precomputed top-N per surface and similar items.

- ``gold/topn/surface=/ds=``: per user and surface, the candidates ordered by their score
  (the ranker's where a ranker scored them, else the retrieval blend), after the surface's
  business rules and diversity (``jobs/rules.py``). The ``email`` surface does not repeat
  what ``home_feed`` shows in its first slots.
- ``gold/similar_items/ds=``: per item, its nearest items by cosine of item vectors (content-
  mapped vectors for items without interactions, so cold items have and appear in lists)
  plus co-visitation.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from algorithms.topk import topk_inner_product, topk_inner_product_hnsw
from conf import Settings
from conf.recs import SimilarSettings, SurfaceSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.item_side import ItemContext, read_item_context
from jobs.lake import Lake
from jobs.retrieval import RetrievalContext
from jobs.rules import (
    Block,
    ItemMeta,
    SurfaceRows,
    apply_surface,
    blocked_by,
    user_rng,
    with_exploration,
)
from jobs.spark_arrow import arrow_schema_to_spark, whole_users
from jobs.tables import CANDIDATES, SIMILAR_ITEMS, TOPN, TOPN_FIELDS

log = logging.getLogger(__name__)

TOPN_ROW = pa.schema([*TOPN_FIELDS, pa.field("surface", pa.string(), False)])
"""A row of ``gold/topn`` before its ``ds`` column."""


def surface_order(surfaces: dict[str, SurfaceSettings]) -> list[str]:
    """Surfaces ordered so that one excluding another's slots comes after it."""
    order: list[str] = []
    pending = dict(surfaces)
    while pending:
        ready = [s for s, r in pending.items() if r.exclude_from in (None, *order)
                 or r.exclude_from not in surfaces]
        if not ready:
            raise ValueError(f"surfaces exclude each other in a cycle: {sorted(pending)}")
        for s in sorted(ready):
            order.append(s)
            pending.pop(s)
    return order


def surface_rows(batch: pa.RecordBatch, meta: ItemMeta, surfaces: dict[str, SurfaceSettings],
                 seed: int, ds: str) -> pa.RecordBatch:
    """Every surface's top-N rows (``TOPN_FIELDS`` and ``surface``) of the users whose
    candidate rows ``batch`` holds (all of each user's rows; any order)."""
    block = Block.of(batch.column("user_id"), batch.column("item_id"),
                     batch.column("score"), meta)
    shown: dict[str, SurfaceRows] = {}
    parts = []
    for name in surface_order(surfaces):
        rule = surfaces[name]
        blocked = (blocked_by(block, shown[rule.exclude_from], rule.exclude_first)
                   if rule.exclude_from in shown else None)
        out = apply_surface(block, rule, lambda u, n=name: user_rng(
            seed, block.user_ids[u], ds, n), blocked)
        shown[name] = out
        take = pa.array(out.rows, pa.int64())
        parts.append(pa.RecordBatch.from_arrays([
            batch.column("user_id").take(take), pa.array(out.rank, pa.int32()),
            batch.column("item_id").take(take), pa.array(out.score, pa.float64()),
            with_exploration(batch.column("sources").take(take), out.explored),
            pa.array([name] * len(out.rows), pa.string())], schema=TOPN_ROW))
    table = pa.Table.from_batches(parts, schema=TOPN_ROW).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=TOPN_ROW)


def user_surfaces(user_id: str, items: list[str], scores: list[float],
                  sources: list[list[str]], meta: ItemMeta,
                  surfaces: dict[str, SurfaceSettings], seed: int, ds: str
                  ) -> dict[str, list[tuple[str, float, list[str]]]]:
    """Every surface's list for one user: ``{surface: [(item, score, sources)]}``."""
    batch = pa.RecordBatch.from_pydict(
        {"user_id": [user_id] * len(items), "item_id": items, "score": scores,
         "sources": sources},
        schema=pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                          ("score", pa.float64()), ("sources", pa.list_(pa.string()))]))
    rows = surface_rows(batch, meta, surfaces, seed, ds).to_pylist()
    return {name: [(r["item_id"], r["score"], r["sources"]) for r in rows
                   if r["surface"] == name] for name in surface_order(surfaces)}


def topn_batches(batches, meta: ItemMeta, surfaces: dict[str, SurfaceSettings], seed: int,
                 ds: str):
    """``mapInArrow`` body: batches holding whole users' candidate rows -> top-N rows of
    every surface."""
    for batch in batches:
        if batch.num_rows:
            yield surface_rows(batch, meta, surfaces, seed, ds)


def transform(candidates: DataFrame, meta_broadcast, surfaces: dict[str, SurfaceSettings],
              seed: int, ds: str, partitions: int) -> DataFrame:
    """Top-N rows of every surface from ``gold/candidates`` rows."""
    schema = arrow_schema_to_spark(TOPN_ROW)
    ordered = (candidates.select("user_id", "item_id", "score", "sources")
               .repartition(partitions, "user_id").sortWithinPartitions("user_id"))

    def body(batches):
        yield from topn_batches(whole_users(batches), meta_broadcast.value, surfaces, seed, ds)

    return ordered.mapInArrow(body, schema).withColumn("ds", F.lit(ds))


def similar_items(ctx: RetrievalContext, cfg: SimilarSettings | None = None) -> pa.Table:
    """Per item, its ``cfg.k`` nearest items by cosine of item vectors plus weighted
    co-visitation (``cfg.covis_weight``), best first.

    Every pair of items is compared exactly (blocked matrix products, memory bounded by the
    block) for catalogues up to ``cfg.exact_max_items``; larger ones search an HNSW graph over
    the unit vectors. Items whose vector is all zeros (no CF and no content vector) get no
    list.
    """
    cfg = cfg or SimilarSettings()
    k = cfg.k
    unit = ctx.item_vectors / np.maximum(
        np.linalg.norm(ctx.item_vectors, axis=1, keepdims=True), 1e-12)
    has = np.linalg.norm(ctx.item_vectors, axis=1) > 0
    rows = np.flatnonzero(has)
    n = len(ctx.item_ids)
    if len(rows) < 2:
        return pa.schema(SIMILAR_ITEMS.schema).empty_table().drop_columns(["ds"])
    import scipy.sparse as sp

    kk = min(k, len(rows) - 1)
    threads = cfg.threads or None
    if len(rows) <= cfg.exact_max_items:
        self_loops = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                                   shape=(len(rows), n))
        ids, sims = topk_inner_product(unit[rows], unit, kk, exclude=self_loops,
                                       threads=threads)
    else:
        local, sims = topk_inner_product_hnsw(unit[rows], unit[rows], kk + 1, threads=threads)
        mine = local == np.arange(len(rows))[:, None]
        mine[:, -1] |= ~mine.any(axis=1)  # no self hit: drop the last (weakest) one
        keep = ~mine
        ids = np.where(local[keep] >= 0, rows[np.maximum(local[keep], 0)], -1).reshape(-1, kk)
        sims = sims[keep].reshape(-1, kk)
    covis = ctx.neighbours[rows].tocoo()
    found = ids >= 0
    off = covis.col != rows[covis.row]  # an item is never its own neighbour
    weight = cfg.covis_weight
    scores = sp.csr_matrix(
        (np.r_[sims[found].astype(np.float64), weight * covis.data[off].astype(np.float64)],
         (np.r_[np.nonzero(found)[0], covis.row[off]], np.r_[ids[found], covis.col[off]])),
        shape=(len(rows), n))
    scores.sum_duplicates()  # cosine plus weighted co-visitation, one entry per pair
    owner = np.repeat(np.arange(len(rows)), np.diff(scores.indptr))
    # best first, ties by item id (rows are in item id order)
    order = np.lexsort((scores.indices, -scores.data, owner))
    owner, col, value = owner[order], scores.indices[order], scores.data[order]
    rank = np.arange(len(order)) - np.repeat(scores.indptr[:-1], np.diff(scores.indptr))
    keep = rank < k
    return pa.table({"item_id": pa.array(ctx.item_ids[rows[owner[keep]]], pa.string()),
                     "rank": pa.array(rank[keep] + 1, pa.int32()),
                     "similar_item_id": pa.array(ctx.item_ids[col[keep]], pa.string()),
                     "score": pa.array(value[keep], pa.float64())})


def write_similar_items(lake: Lake, settings: Settings, ds: str,
                        context: ItemContext | None = None) -> tuple[int, int]:
    """The similar-items stage: ``gold/similar_items`` of ``ds`` from its item context.
    Returns the rows written and the table's new version."""
    context = context or read_item_context(lake, ds, settings)
    similar = similar_items(context.retrieval(), settings.similar)
    similar = similar.append_column("ds", pa.array([ds] * similar.num_rows, pa.string()))
    return similar.num_rows, lake.overwrite_partitions(SIMILAR_ITEMS.name, similar, [ds])


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/topn`` (every surface) and ``gold/similar_items`` for ``ds``."""
    lake = Lake(settings)
    context = read_item_context(lake, ds, settings)
    meta = spark.sparkContext.broadcast(context.meta())
    candidates = lake.read_spark(spark, CANDIDATES.name, [ds])
    topn = ranked_topn(spark, candidates, meta, settings, ds, ds,
                       max(1, settings.spark.shuffle_partitions))
    version = lake.write_spark(TOPN.name, topn, [ds])
    similar_rows, sim_version = write_similar_items(lake, settings, ds, context)
    counts = lake.read_arrow(TOPN.name, [ds], columns=["surface", "user_id"])
    per_surface = {r["values"]: r["counts"] for r in
                   counts.column("surface").value_counts().to_pylist()}
    return {"ds": ds, "rows": per_surface, "similar_items_rows": similar_rows,
            "versions": {TOPN.name: version, SIMILAR_ITEMS.name: sim_version}}


def ranked_topn(spark: SparkSession, candidates: DataFrame, meta_broadcast,
                settings: Settings, ranker_ds: str, ds: str, partitions: int) -> DataFrame:
    """Top-N rows of every surface (date ``ds``) from candidates, ordered by the ranker of
    ``ranker_ds`` where there is one (:mod:`jobs.rank_candidates`), else by the retrieval
    blend; ``partitions`` user partitions.

    With a ranker, scoring and the rules run in one pass over each user partition (the
    scored batches hold whole users, which is what the rules need), so the scored rows are
    never shuffled again.
    """
    from jobs.rank_candidates import score_batches, scoring_inputs

    surfaces, seed = dict(settings.surfaces), settings.seed
    inputs = scoring_inputs(spark, candidates, settings, ranker_ds)
    if inputs is None:
        return transform(candidates, meta_broadcast, surfaces, seed, ds, partitions)
    featured, path, weight = inputs
    columns = [f.name for f in candidates.schema.fields]
    rs, where = settings.ranker, str(path)

    def body(batches):
        scored = score_batches(batches, where, columns, rs.eval_batch_size, rs.score_threads,
                               weight)
        yield from topn_batches(scored, meta_broadcast.value, surfaces, seed, ds)

    return (featured.repartition(partitions, "user_id")
            .sortWithinPartitions("user_id", "item_id")
            .mapInArrow(body, arrow_schema_to_spark(TOPN_ROW)).withColumn("ds", F.lit(ds)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe topn", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    print(json.dumps(run(get_spark(settings), settings, args.ds)))
    return 0
