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

from algorithms.topk import topk_inner_product
from conf import Settings
from conf.recs import SurfaceSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.item_side import read_item_context
from jobs.lake import Lake
from jobs.retrieval import RetrievalContext
from jobs.rules import ItemMeta, apply_surface, user_rng
from jobs.spark_arrow import arrow_schema_to_spark, whole_users
from jobs.tables import CANDIDATES, SIMILAR_ITEMS, TOPN, TOPN_FIELDS

log = logging.getLogger(__name__)

SIMILAR_K = 50
COVIS_WEIGHT = 0.5
"""Weight of the co-visitation score next to the cosine in similar-items lists."""


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


def user_surfaces(user_id: str, items: list[str], scores: list[float],
                  sources: list[list[str]], meta: ItemMeta,
                  surfaces: dict[str, SurfaceSettings], seed: int, ds: str
                  ) -> dict[str, list[tuple[str, float, list[str]]]]:
    """Every surface's list for one user (pure)."""
    out: dict[str, list] = {}
    for name in surface_order(surfaces):
        rule = surfaces[name]
        blocked = set()
        if rule.exclude_from in out:
            blocked = {row[0] for row in out[rule.exclude_from][: rule.exclude_first]}
        out[name] = apply_surface(items, scores, sources, meta, rule,
                                  user_rng(seed, user_id, ds, name), blocked)
    return out


def topn_batches(batches, meta: ItemMeta, surfaces: dict[str, SurfaceSettings], seed: int,
                 ds: str):
    """``mapInArrow`` body: candidate rows sorted by user -> top-N rows of every surface."""
    for batch in batches:
        cols = batch.to_pydict()
        users = cols["user_id"]
        out = {f.name: [] for f in TOPN_FIELDS} | {"surface": []}
        start = 0
        while start < len(users):
            stop = start
            while stop < len(users) and users[stop] == users[start]:
                stop += 1
            lists = user_surfaces(users[start], cols["item_id"][start:stop],
                                  cols["score"][start:stop], cols["sources"][start:stop],
                                  meta, surfaces, seed, ds)
            for surface, rows in lists.items():
                for rank, (item, score, src) in enumerate(rows, 1):
                    out["user_id"].append(users[start])
                    out["rank"].append(rank)
                    out["item_id"].append(item)
                    out["score"].append(score)
                    out["sources"].append(src)
                    out["surface"].append(surface)
            start = stop
        yield pa.RecordBatch.from_pydict(out, schema=pa.schema(
            [*TOPN_FIELDS, pa.field("surface", pa.string(), False)]))


def transform(candidates: DataFrame, meta_broadcast, surfaces: dict[str, SurfaceSettings],
              seed: int, ds: str, partitions: int) -> DataFrame:
    """Top-N rows of every surface from ``gold/candidates`` rows."""
    schema = arrow_schema_to_spark(pa.schema(
        [*TOPN_FIELDS, pa.field("surface", pa.string(), False)]))
    ordered = (candidates.select("user_id", "item_id", "score", "sources")
               .repartition(partitions, "user_id").sortWithinPartitions("user_id"))

    def body(batches):
        yield from topn_batches(whole_users(batches), meta_broadcast.value, surfaces, seed, ds)

    return ordered.mapInArrow(body, schema).withColumn("ds", F.lit(ds))


def similar_items(ctx: RetrievalContext, k: int = SIMILAR_K) -> pa.Table:
    """Per item, ``k`` nearest items by cosine of item vectors plus weighted co-visitation.

    Items whose vector is all zeros (no CF and no content vector) get no list.
    """
    unit = ctx.item_vectors / np.maximum(
        np.linalg.norm(ctx.item_vectors, axis=1, keepdims=True), 1e-12)
    has = np.linalg.norm(ctx.item_vectors, axis=1) > 0
    rows = np.flatnonzero(has)
    n = len(ctx.item_ids)
    if len(rows) < 2:
        return pa.schema(SIMILAR_ITEMS.schema).empty_table().drop_columns(["ds"])
    import scipy.sparse as sp

    self_loops = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                               shape=(len(rows), n))
    kk = min(k, len(rows) - 1)
    ids, sims = topk_inner_product(unit[rows], unit, kk, exclude=self_loops)
    covis = ctx.neighbours[rows]
    out_item, out_rank, out_sim, out_score = [], [], [], []
    for r, item_row in enumerate(rows):
        scores = {int(j): float(s) for j, s in zip(ids[r], sims[r], strict=True) if j >= 0}
        lo, hi = covis.indptr[r], covis.indptr[r + 1]
        for j, s in zip(covis.indices[lo:hi], covis.data[lo:hi], strict=True):
            if j != item_row:
                scores[int(j)] = scores.get(int(j), 0.0) + COVIS_WEIGHT * float(s)
        best = sorted(scores, key=lambda j: (-scores[j], ctx.item_ids[j]))[:k]
        out_item += [ctx.item_ids[item_row]] * len(best)
        out_rank += list(range(1, len(best) + 1))
        out_sim += [ctx.item_ids[j] for j in best]
        out_score += [scores[j] for j in best]
    return pa.table({"item_id": pa.array(out_item, pa.string()),
                     "rank": pa.array(out_rank, pa.int32()),
                     "similar_item_id": pa.array(out_sim, pa.string()),
                     "score": pa.array(out_score, pa.float64())})


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/topn`` (every surface) and ``gold/similar_items`` for ``ds``."""
    lake = Lake(settings)
    context = read_item_context(lake, ds, settings)
    meta = spark.sparkContext.broadcast(context.meta())
    candidates = lake.read_spark(spark, CANDIDATES.name, [ds])
    scored = score_candidates(spark, candidates, settings, ds)
    topn = transform(scored, meta, dict(settings.surfaces), settings.seed, ds,
                     max(1, settings.spark.shuffle_partitions))
    version = lake.write_spark(TOPN.name, topn, [ds])
    similar = similar_items(context.retrieval())
    similar = similar.append_column("ds", pa.array([ds] * similar.num_rows, pa.string()))
    sim_version = lake.overwrite_partitions(SIMILAR_ITEMS.name, similar, [ds])
    counts = lake.read_arrow(TOPN.name, [ds], columns=["surface", "user_id"])
    per_surface = {r["values"]: r["counts"] for r in
                   counts.column("surface").value_counts().to_pylist()}
    return {"ds": ds, "rows": per_surface, "similar_items_rows": similar.num_rows,
            "versions": {TOPN.name: version, SIMILAR_ITEMS.name: sim_version}}


def score_candidates(spark: SparkSession, candidates: DataFrame, settings: Settings,
                     ds: str) -> DataFrame:
    """Candidates with the score that orders them: the ranker's probability when a ranker
    was trained for ``ds`` (``recpipe ranker train``), else the retrieval blend."""
    from jobs.rank_candidates import ranked_candidates

    return ranked_candidates(spark, candidates, settings, ds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe topn", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    print(json.dumps(run(get_spark(settings), settings, args.ds)))
    return 0
