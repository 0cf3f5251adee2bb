"""``recpipe matrix``: ``silver/interactions`` -> ``gold/training_matrix/ds=``.

One row per (user, item) with a confidence that weighs event types, rating values, dwell and
recency. For each event::

    w = event_weights[type]                                       (click, purchase, ...)
    w = event_weights["rating"] * (value - rating_center)         (ratings)
    w = event_weights["view"] + dwell_weight * min(dwell, cap)    (views with dwell)
    confidence += w * 0.5 ** (age_days / half_life_days)

where ``age_days`` is measured from the end of ``ds``. Pairs whose confidence is at or below
``min_confidence`` are left out (a low rating or a skip is negative evidence), and so is every
pair with negative feedback (``hide``, ``not_interested``, ``dislike``): the user said no, so
the next model no longer learns that item as one of theirs.
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from algorithms.window import dates_between, training_window
from conf import Settings
from conf.pipeline import NEGATIVE_FEEDBACK, MatrixSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.spark import exact_sum
from jobs.tables import SILVER_INTERACTIONS, TRAINING_MATRIX


def event_weight(cfg: MatrixSettings) -> F.Column:
    """Per-event weight before decay, from ``event_type`` and ``value``."""
    weights = cfg.event_weights
    base = F.lit(0.0)
    for etype, w in sorted(weights.items()):
        base = F.when(F.col("event_type") == etype, F.lit(float(w))).otherwise(base)
    rating = F.lit(float(weights.get("rating", 0.0))) * (F.col("value") - cfg.rating_center)
    dwell = F.lit(float(weights.get("view", 0.0))) + cfg.dwell_weight * F.least(
        F.coalesce(F.col("value"), F.lit(0.0)), F.lit(cfg.dwell_cap_s))
    return (F.when(F.col("event_type") == "rating", rating)
             .when(F.col("event_type") == "view", dwell)
             .otherwise(base))


def transform(interactions: DataFrame, cfg: MatrixSettings, ds: str) -> DataFrame:
    """Aggregate typed interactions into the training matrix for ``ds``.

    Args:
        interactions: silver rows (``user_id, item_id, event_type, value, ts``), already
            limited to the look-back window.
        cfg: weights, dwell and decay settings.
        ds: logical date of the model; recency is measured from the end of ``ds`` (events
            of the holdout days are not passed in, see ``algorithms/window.py``).

    Returns:
        ``user_id, item_id, confidence, n_events, last_ts, ds``.
    """
    end = (date.fromisoformat(ds) + timedelta(days=1)).isoformat()
    age_days = (F.lit(end).cast("timestamp").cast("double") - F.col("ts").cast("double")) \
        / 86400.0
    decay = F.pow(F.lit(0.5), age_days / cfg.half_life_days)
    scored = interactions.withColumn("w", event_weight(cfg) * decay)
    said_no = F.col("event_type").isin(*NEGATIVE_FEEDBACK).cast("int")
    return (scored.groupBy("user_id", "item_id")
            .agg(exact_sum("w").alias("confidence"), F.count(F.lit(1)).alias("n_events"),
                 F.max("ts").alias("last_ts"), F.max(said_no).alias("_said_no"))
            .where((F.col("confidence") > cfg.min_confidence) & (F.col("_said_no") == 0))
            .withColumn("ds", F.lit(ds))
            .select(*TRAINING_MATRIX.schema.names))


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Build ``gold/training_matrix/ds=<ds>`` from silver events up to ``ds``."""
    lake = Lake(settings)
    first, cutoff = training_window(settings, ds)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, cutoff)
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    matrix = transform(events, settings.matrix, ds).cache()
    version = lake.write_spark(TRAINING_MATRIX.name, matrix, [ds])
    stats = matrix.agg(F.count(F.lit(1)).alias("rows"),
                       F.countDistinct("user_id").alias("users"),
                       F.countDistinct("item_id").alias("items")).collect()[0].asDict()
    return {"ds": ds, "event_partitions": len(dates), **stats, "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    from jobs.spark import get_spark

    print(json.dumps(run(get_spark(settings), settings, args.ds)))
    return 0
