"""``recpipe candidates``: multi-strategy candidates per user -> ``gold/candidates/ds=``.

The driver reads the item side of ``ds`` (``gold/item_context``, built once by ``recpipe
item-context``, and the popular lists) as a :class:`~jobs.retrieval.RetrievalContext` and
broadcasts it; Spark builds one row per user (vector, recent items, excluded items, segment)
and runs :func:`jobs.retrieval.retrieve` over blocks of users on the executors
(``mapInArrow``), so the work scales out with the number of users.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from algorithms.segments import ALL
from algorithms.window import dates_between, training_window
from conf import Settings
from conf.recs import CandidateSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.item_side import read_item_context
from jobs.lake import Lake
from jobs.ranker_features import list_matrix
from jobs.retrieval import RetrievalContext, UserBlock, retrieve
from jobs.spark_arrow import arrow_schema_to_spark
from jobs.tables import (
    CANDIDATE_FIELDS,
    CANDIDATES,
    SILVER_INTERACTIONS,
    USER_EMBEDDINGS,
)
from jobs.user_segments import segments_as_of

log = logging.getLogger(__name__)

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


def list_rows(column: pa.Array, item_ids: pa.Array) -> list[np.ndarray]:
    """Each row's ``list<string>`` of item ids as int64 item rows, unknown ids dropped, order
    kept (a null list: no rows)."""
    found = pc.index_in(pc.list_flatten(column), value_set=item_ids)
    flat = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    owner = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    known = flat >= 0
    rows, owner = flat[known], owner[known]
    return np.split(rows, np.cumsum(np.bincount(owner, minlength=len(column)))[:-1])


def candidate_blocks(batches, ctx: RetrievalContext, cfg: CandidateSettings):
    """``mapInArrow`` body: user rows in, candidate rows out, ``cfg.user_block`` at a time."""
    dim = ctx.item_vectors.shape[1]
    item_ids = pa.array(ctx.item_ids.tolist(), pa.string())
    for batch in batches:
        for start in range(0, batch.num_rows, cfg.user_block):
            part = batch.slice(start, cfg.user_block)
            vecs, ok = list_matrix(part.column("vector"), dim)
            vecs[~ok] = np.nan
            segments = [s or ALL for s in part.column("segment").to_pylist()]
            block = UserBlock(
                user_ids=part.column("user_id").to_pylist(), vectors=vecs,
                history=list_rows(part.column("history"), item_ids),
                excluded=list_rows(part.column("excluded"), item_ids),
                segments=segments)
            yield from retrieve(ctx, block, cfg).to_batches()


def transform(users: DataFrame, ctx_broadcast, cfg: CandidateSettings, ds: str) -> DataFrame:
    """Candidates for every row of ``users`` (``user_id, vector, history, excluded,
    segment``) with the broadcast retrieval context."""
    schema = arrow_schema_to_spark(pa.schema(CANDIDATE_FIELDS))

    def body(batches):
        yield from candidate_blocks(batches, ctx_broadcast.value, cfg)

    return users.mapInArrow(body, schema).withColumn("ds", F.lit(ds))


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/candidates/ds=<ds>`` for every known user."""
    lake = Lake(settings)
    cfg = settings.candidates
    ctx = read_item_context(lake, ds, settings).retrieval()
    first, cutoff = training_window(settings, ds)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, cutoff)
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    history = user_rows(events, cfg)
    vectors = lake.read_spark(spark, USER_EMBEDDINGS.name, [ds]).select(
        F.col("id").alias("user_id"), "vector")
    users = (spark.createDataFrame(segments_as_of(lake, settings, ds))
             .join(history, "user_id", "full").join(vectors, "user_id", "left")
             .repartition(max(1, settings.spark.shuffle_partitions), "user_id"))
    cands = transform(users, spark.sparkContext.broadcast(ctx), cfg, ds)
    version = lake.write_spark(CANDIDATES.name, cands, [ds])
    written = lake.read_spark(spark, CANDIDATES.name, [ds]).select("user_id", "sources")
    totals = written.agg(F.count(F.lit(1)).alias("rows"),
                         F.countDistinct("user_id").alias("users")).collect()[0]
    per_source = dict(written.select(F.explode("sources").alias("s")).groupBy("s").count()
                      .collect())
    return {"ds": ds, "rows": totals["rows"], "users": totals["users"],
            "items": len(ctx.item_ids), "found_by": dict(sorted(per_source.items())),
            "version": version}


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
