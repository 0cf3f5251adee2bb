"""``recpipe covisitation``: ``silver/interactions`` -> ``gold/covisitation/ds=``.

Items that users touch in the same session. Steps, all in Spark:

1. Sessions: a user's events (of ``event_types``, in the ``window_days`` days up to the
   training cutoff of ``ds``, ``ds - matrix.holdout_days``, so offline evaluation on the
   held-out days sees no leak) ordered by time; a gap longer than ``session_gap_minutes``
   starts a new session.
2. A session becomes its distinct items in order of first occurrence, cut to the first
   ``max_session_items``.
3. Pairs: two items of a session at most ``window_size`` positions apart, counted once per
   session (so a session of n items yields at most ``n * window_size`` pairs: the work grows
   linearly with the events, not with the square of session length; no self-join).
4. ``co_count(i, j)``: sessions holding the pair; ``sessions(i)``: sessions holding item i.
   ``score`` is ``co_count / sqrt(sessions(i) * sessions(j))`` (``cosine``, symmetric) or
   ``co_count / sessions(i)`` (``conditional``: the share of i's sessions that hold j).
5. Pairs with ``co_count < min_co_count`` are dropped; each item keeps its ``top_k``
   neighbours by score, then co_count, then neighbour id.
"""

from __future__ import annotations

import argparse
import json

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from algorithms.window import dates_between
from conf import Settings
from conf.errors import EmptyInput
from conf.retrieval import CovisitationSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.popularity import day_bounds, event_window
from jobs.tables import COVISITATION, SILVER_INTERACTIONS


def sessionize(events: DataFrame, gap_minutes: float) -> DataFrame:
    """Number each user's sessions: a new one starts after a gap longer than ``gap_minutes``.

    Args:
        events: rows with ``user_id, item_id, ts``.
        gap_minutes: the longest gap (minutes) inside one session.

    Returns:
        ``user_id, session, item_id, ts``; ``session`` counts from 1 per user in time order
        (ties ordered by ``item_id``).
    """
    ordered = Window.partitionBy("user_id").orderBy("ts", "item_id")
    gap = F.col("ts").cast("double") - F.lag(F.col("ts").cast("double")).over(ordered)
    new = F.when(gap.isNull() | (gap > gap_minutes * 60.0), 1).otherwise(0)
    running = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (events.select("user_id", "item_id", "ts")
            .withColumn("new", new)
            .withColumn("session", F.sum("new").over(running).cast("long"))
            .drop("new"))


def session_items(sessions: DataFrame, max_items: int) -> DataFrame:
    """Each session's distinct items by first occurrence (ties by id), first ``max_items``.

    Returns:
        ``user_id, session, items`` (array of item ids).
    """
    first = (sessions.groupBy("user_id", "session", "item_id")
             .agg(F.min("ts").alias("first_ts")))
    return (first.groupBy("user_id", "session")
            .agg(F.array_sort(F.collect_list(F.struct("first_ts", "item_id"))).alias("s"))
            .select("user_id", "session",
                    F.slice(F.transform("s", lambda x: x["item_id"]), 1, max_items)
                    .alias("items")))


def session_pairs(items: DataFrame, window_size: int) -> DataFrame:
    """Ordered pairs ``(item_id, neighbor_id)`` of items at most ``window_size`` apart.

    Both directions are emitted, each once per session (items of a session are distinct).

    Returns:
        ``item_id, neighbor_id``, one row per (session, ordered pair).
    """
    def pairs_at(arr):
        return F.transform(
            F.sequence(F.lit(1), F.size(arr) - 1),
            lambda i: F.transform(F.slice(arr, i + 1, window_size),
                                  lambda b: F.struct(F.element_at(arr, i).alias("a"),
                                                     b.alias("b"))))

    forward = (items.where(F.size("items") >= 2)
               .select(F.explode(F.flatten(pairs_at(F.col("items")))).alias("p"))
               .select(F.col("p.a").alias("item_id"), F.col("p.b").alias("neighbor_id")))
    backward = forward.select(F.col("neighbor_id").alias("item_id"),
                              F.col("item_id").alias("neighbor_id"))
    return forward.unionByName(backward)


def score_pairs(pairs: DataFrame, items: DataFrame, cfg: CovisitationSettings) -> DataFrame:
    """Count pairs and normalise.

    Args:
        pairs: from :func:`session_pairs`.
        items: from :func:`session_items` (gives ``sessions(i)``).
        cfg: ``min_co_count`` and ``normalisation``.

    Returns:
        ``item_id, neighbor_id, co_count, score``.
    """
    counts = (items.select(F.explode("items").alias("item_id"))
              .groupBy("item_id").agg(F.count(F.lit(1)).alias("n_i")))
    co = (pairs.groupBy("item_id", "neighbor_id").agg(F.count(F.lit(1)).alias("co_count"))
          .where(F.col("co_count") >= cfg.min_co_count))
    joined = co.join(counts, "item_id").join(
        counts.select(F.col("item_id").alias("neighbor_id"), F.col("n_i").alias("n_j")),
        "neighbor_id")
    if cfg.normalisation == "cosine":
        score = F.col("co_count") / F.sqrt(F.col("n_i").cast("double") * F.col("n_j"))
    else:
        score = F.col("co_count") / F.col("n_i").cast("double")
    return joined.select("item_id", "neighbor_id", "co_count", score.alias("score"))


def transform(events: DataFrame, cfg: CovisitationSettings, ds: str, last_date: str
              ) -> DataFrame:
    """Co-visitation neighbours for ``ds``.

    Args:
        events: silver interactions (``user_id, item_id, event_type, ts``), window not yet
            applied.
        cfg: session, pairing, normalisation and top-k settings.
        ds: logical date written into the rows.
        last_date: last event date counted (the training cutoff of ``ds``).

    Returns:
        ``item_id, neighbor_id, score, co_count, rank, ds``, at most ``top_k`` per item.
    """
    start, end = day_bounds(last_date, cfg.window_days)
    kept = events.where((F.col("ts") >= F.lit(start).cast("timestamp"))
                        & (F.col("ts") < F.lit(end).cast("timestamp"))
                        & F.col("event_type").isin(list(cfg.event_types)))
    items = session_items(sessionize(kept, cfg.session_gap_minutes), cfg.max_session_items)
    scored = score_pairs(session_pairs(items, cfg.window_size), items, cfg)
    ordered = Window.partitionBy("item_id").orderBy(
        F.col("score").desc(), F.col("co_count").desc(), F.col("neighbor_id").asc())
    return (scored.withColumn("rank", F.row_number().over(ordered))
            .where(F.col("rank") <= cfg.top_k)
            .withColumn("ds", F.lit(ds))
            .select(*COVISITATION.schema.names))


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/covisitation/ds=<ds>``.

    Raises:
        EmptyInput: no ``silver/interactions`` partition inside the window.
    """
    cfg: CovisitationSettings = settings.covisitation
    lake = Lake(settings)
    first, last = event_window(settings, ds, cfg.window_days)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, last)
    if not dates:
        raise EmptyInput(f"silver/interactions has no event_date partition in "
                         f"[{first}, {last}] (the {cfg.window_days} days up to the training "
                         f"cutoff of {ds})")
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    table = transform(events, cfg, ds, last).cache()
    try:
        version = lake.write_spark(COVISITATION.name, table, [ds])
        stats = table.agg(F.count(F.lit(1)).alias("rows"),
                          F.countDistinct("item_id").alias("items")).collect()[0].asDict()
    finally:
        table.unpersist()
    return {"ds": ds, "events_from": first, "events_until": last,
            "event_partitions": len(dates), **stats, "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe covisitation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    report = run(get_spark(settings), settings, args.ds)
    print(json.dumps(report))
    return 0
