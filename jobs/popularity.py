"""``recpipe popularity``: ``silver/interactions`` + ``silver/users`` -> ``gold/popularity/ds=``.

Time-decayed popularity, overall (segment ``all``) and per user segment
(:mod:`algorithms.segments`). The events used end with the training cutoff of ``ds``
(``ds - matrix.holdout_days``, see :mod:`algorithms.window`), so offline evaluation on the
held-out days sees no leak; the window is
the ``window_days`` days up to that cutoff. For each event in it::

    w = event_weights[type] * 0.5 ** (age_days / half_life_days)

with ``age_days`` measured from the end of the cutoff day. A user's weights on one item are
summed and capped at ``user_item_cap``; an item's score in a segment is the sum over the
segment's users, divided by the segment's top score (so the top item has 1.0). Segments with fewer
than ``min_segment_users`` active users are not written: callers fall back to ``all``.
Users missing from ``silver/users`` (or all users, when there is no snapshot at or before
``ds``) get the segment of a user with no attributes, as the service does for them.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from algorithms.segments import ALL, segment_of
from algorithms.window import dates_between, training_window
from conf import Settings
from conf.errors import EmptyInput
from conf.retrieval import PopularitySettings
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.spark import exact_sum
from jobs.tables import POPULARITY, SILVER_INTERACTIONS, SILVER_USERS
from jobs.user_segments import segments_as_of

log = logging.getLogger(__name__)



def event_window(settings: Settings, ds: str, window_days: int) -> tuple[str, str]:
    """``(first, last)`` event dates (inclusive) a retrieval table for ``ds`` reads:
    ``window_days`` days ending with the training cutoff of ``ds``."""
    _, last = training_window(settings, ds)
    first = date.fromisoformat(last) - timedelta(days=window_days - 1)
    return first.isoformat(), last


def day_bounds(last_date: str, window_days: int) -> tuple[str, str]:
    """``(start, end)`` ISO timestamps of ``window_days`` whole days ending with
    ``last_date`` (``start`` inclusive, ``end`` = midnight UTC after ``last_date``,
    exclusive)."""
    end = date.fromisoformat(last_date) + timedelta(days=1)
    return (end - timedelta(days=window_days)).isoformat(), end.isoformat()


def decayed_user_items(events: DataFrame, cfg: PopularitySettings, last_date: str
                       ) -> DataFrame:
    """Per (user, item): the capped sum of decayed event weights inside the window.

    Args:
        events: silver rows with at least ``user_id, item_id, event_type, ts``.
        cfg: weights, decay, window and cap.
        last_date: last event date of the window; ages are measured from its end.

    Returns:
        ``user_id, item_id, w`` with ``0 < w <= cfg.user_item_cap``.
    """
    start, end = day_bounds(last_date, cfg.window_days)
    weights = {t: w for t, w in sorted(cfg.event_weights.items()) if w > 0}
    if not weights:
        raise ValueError(f"popularity.event_weights gives no event type a positive weight: "
                         f"{cfg.event_weights}")
    base = F.lit(None).cast("double")
    for etype, w in weights.items():
        base = F.when(F.col("event_type") == etype, F.lit(float(w))).otherwise(base)
    end_s = F.lit(end).cast("timestamp").cast("double")
    age_days = (end_s - F.col("ts").cast("double")) / 86400.0
    return (events
            .where((F.col("ts") >= F.lit(start).cast("timestamp"))
                   & (F.col("ts") < F.lit(end).cast("timestamp"))
                   & F.col("event_type").isin(list(weights)))
            .withColumn("w", base * F.pow(F.lit(0.5), age_days / cfg.half_life_days))
            .groupBy("user_id", "item_id")
            .agg(F.least(exact_sum("w"), F.lit(float(cfg.user_item_cap))).alias("w")))


def rank_top_k(scores: DataFrame, top_k: int) -> DataFrame:
    """Normalise ``segment, item_id, score`` by each segment's top score and keep its top k.

    Ranks order by score (descending), then ``item_id`` (ascending), so ties are stable.
    """
    by_segment = Window.partitionBy("segment")
    ordered = by_segment.orderBy(F.col("score").desc(), F.col("item_id").asc())
    return (scores
            .withColumn("score", F.col("score") / F.max("score").over(by_segment))
            .withColumn("rank", F.row_number().over(ordered))
            .where(F.col("rank") <= top_k))


def transform(events: DataFrame, segments: DataFrame | None, cfg: PopularitySettings,
              ds: str, last_date: str) -> DataFrame:
    """Popularity lists for ``ds``: overall and per segment.

    Args:
        events: silver interactions (``user_id, item_id, event_type, ts``), window not yet
            applied.
        segments: ``user_id, segment`` (see :func:`user_segments`), or ``None`` if no user
            snapshot exists; ignored when ``cfg.segments`` is empty.
        cfg: popularity settings.
        ds: logical date written into the rows.
        last_date: last event date counted (the training cutoff of ``ds``).

    Returns:
        ``segment, item_id, score, rank, ds``, at most ``cfg.top_k`` rows per segment.
    """
    user_items = decayed_user_items(events, cfg, last_date)
    overall = (user_items.groupBy("item_id").agg(exact_sum("w").alias("score"))
               .withColumn("segment", F.lit(ALL)))
    parts = [overall.select("segment", "item_id", "score")]
    if cfg.segments:
        unknown = segment_of(None, cfg.segments)
        tagged = user_items if segments is None else user_items.join(
            segments, "user_id", "left")
        if segments is None:
            tagged = tagged.withColumn("segment", F.lit(unknown))
        tagged = tagged.withColumn("segment", F.coalesce(F.col("segment"), F.lit(unknown)))
        big = (tagged.groupBy("segment")
               .agg(F.countDistinct("user_id").alias("n_users"))
               .where(F.col("n_users") >= cfg.min_segment_users)
               .select("segment"))
        per_segment = (tagged.join(big, "segment", "left_semi")
                       .groupBy("segment", "item_id").agg(exact_sum("w").alias("score")))
        parts.append(per_segment.select("segment", "item_id", "score"))
    scores = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return (rank_top_k(scores, cfg.top_k)
            .withColumn("ds", F.lit(ds))
            .select(*POPULARITY.schema.names))


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/popularity/ds=<ds>``.

    Raises:
        EmptyInput: no ``silver/interactions`` partition inside the window.
    """
    cfg: PopularitySettings = settings.popularity
    lake = Lake(settings)
    first, last = event_window(settings, ds, cfg.window_days)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, last)
    if not dates:
        raise EmptyInput(f"silver/interactions has no event_date partition in "
                         f"[{first}, {last}] (the {cfg.window_days} days up to the training "
                         f"cutoff of {ds})")
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    segments = None
    if cfg.segments:
        table = segments_as_of(lake, settings, ds)
        segments = spark.createDataFrame(table) if table.num_rows else None
    table = transform(events, segments, cfg, ds, last).cache()
    try:
        version = lake.write_spark(POPULARITY.name, table, [ds])
        stats = table.agg(F.count(F.lit(1)).alias("rows"),
                          F.countDistinct("segment").alias("segments")).collect()[0].asDict()
    finally:
        table.unpersist()
    return {"ds": ds, "events_from": first, "events_until": last,
            "event_partitions": len(dates),
            "users_partition": latest_partition_at_or_before(lake, SILVER_USERS.name, ds),
            **stats,
            "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe popularity",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    report = run(get_spark(settings), settings, args.ds)
    print(json.dumps(report))
    return 0
