"""``recpipe ranker examples``: labelled, featured ranker examples from earlier candidates.

Temporal design (C(D) = D - ``matrix.holdout_days``, the training cutoff of D, see
:func:`algorithms.window.training_window`): the examples of D are the candidates of the earlier
date D' = D - ``ranker.label_days`` (``gold/candidates/ds=D'``, built from events up to
C(D')), labelled by the positive events of the label window C(D') < event_date <= C(D):

- a candidate with a positive event (``ranker.label_event_weights``; a rating from
  ``ranker.label_min_rating``) is a positive, weighted by its event type;
- the other candidates are hard negatives (weight 1);
- ``ranker.negatives_ratio`` random negatives per positive are drawn (seeded per user and
  date) among catalogue items the user has no candidate row and no event with;
- with ``ranker.add_missed_positives`` the positives the candidates missed are added too.

Labels: :mod:`training.labels`; random negatives: :mod:`training.negatives`; features:
:mod:`jobs.ranker_features` (the same as the precompute's). Output:
``gold/ranker_examples/ds=D``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from algorithms.window import dates_between, training_window
from conf import Settings
from conf.ranker import RankerSettings
from jobs.lake import Lake
from jobs.ranker_features import FeatureInputs, add_features, feature_inputs
from jobs.tables import (
    CANDIDATES,
    EXAMPLES,
    LABEL_COLUMN,
    SILVER_INTERACTIONS,
    WEIGHT_COLUMN,
)
from training.labels import (
    LabelWindow,
    label_candidates,
    label_window,
    missed_positives,
    positive_pairs,
)
from training.negatives import negatives_wanted, random_negatives

log = logging.getLogger(__name__)



# -- the job --------------------------------------------------------------------------------
def build_examples(candidates: DataFrame, label_events: DataFrame, past_events: DataFrame,
                   catalogue_broadcast: Any, inputs: FeatureInputs, cfg: RankerSettings,
                   window: LabelWindow) -> DataFrame:
    """Labelled, featured example rows (the ``gold/ranker_examples`` schema).

    Args:
        candidates: ``gold/candidates`` rows of ``window.source_ds``.
        label_events: events of the label window (``user_id, item_id, event_type, value``).
        past_events: every event up to the label cutoff (``user_id, item_id``), kept out of
            the random negatives.
        catalogue_broadcast: broadcast (N,) item ids random negatives are drawn from.
        inputs: feature inputs of ``window.source_ds``.
        cfg: the ranker settings.
        window: the dates.
    """
    positives = positive_pairs(label_events, cfg)
    rows = label_candidates(candidates, positives, cfg.positive_users_only).select(
        "user_id", "item_id", "score", "sources", LABEL_COLUMN, WEIGHT_COLUMN, "origin")
    extra_cols = ("user_id", "item_id", F.lit(None).cast("double").alias("score"),
                  F.lit(None).cast("array<string>").alias("sources"), LABEL_COLUMN,
                  WEIGHT_COLUMN, "origin")
    if cfg.add_missed_positives:
        rows = rows.unionByName(missed_positives(candidates, positives).select(*extra_cols))
    if cfg.negatives_ratio > 0:
        wanted = negatives_wanted(rows, past_events, cfg.negatives_ratio)
        negs = random_negatives(wanted, catalogue_broadcast, cfg.seed, window.ds)
        rows = rows.unionByName(negs.select(*extra_cols))
    featured = add_features(rows, inputs)
    return featured.select(
        *[F.col(f.name) for f in EXAMPLES.schema
          if f.name not in ("source_ds", "ds")],
        F.lit(window.source_ds).alias("source_ds"), F.lit(window.ds).alias("ds"))


def example_user_share(positives: DataFrame, cfg: RankerSettings, per_user: int) -> float:
    """The share of the label window's positive users whose examples are built: all of
    them while their candidate rows (``per_user`` each, at most) fit the training budgets
    (``max_train_examples + max_valid_examples``), else the share that fits, so a window
    never holds many more rows than training can read."""
    if cfg.max_train_examples is None or cfg.max_valid_examples is None:
        return 1.0
    users = positives.select("user_id").distinct().count()
    budget_users = (cfg.max_train_examples + cfg.max_valid_examples) / per_user
    return 1.0 if users <= budget_users else budget_users / users


def sampled_users(share: float, seed: int, ds: str):
    """A Spark predicate on ``user_id`` true for a fixed ``share`` of users: a hash of the
    user, the seed and the date, so a rerun keeps the same users."""
    bucket = F.pmod(F.xxhash64(F.col("user_id"), F.lit(seed), F.lit(ds)), F.lit(1_000_000))
    return bucket < F.lit(int(round(share * 1_000_000)))


def run(spark: SparkSession, settings: Settings, ds: str) -> dict[str, Any]:
    """Build ``gold/ranker_examples/ds=<ds>`` from the candidates of ``ds - label_days``.

    Returns:
        A summary; ``skipped`` says why nothing was written (no candidates of D' yet, the
        first nights, or no positive event in the label window).
    """
    lake = Lake(settings)
    window = label_window(settings, ds)
    summary: dict[str, Any] = {"ds": ds, "source_ds": window.source_ds,
                               "label_window": [window.first, window.last]}
    if window.source_ds not in lake.partitions(CANDIDATES.name):
        log.info("no %s partition for %s (D - %d days): no ranker examples for %s; the "
                 "precompute uses retrieval-only scores", CANDIDATES.name, window.source_ds,
                 settings.ranker.label_days, ds)
        return {**summary, "skipped": f"no candidates for {window.source_ds}"}
    available = lake.partitions(SILVER_INTERACTIONS.name)
    label_dates = dates_between(available, window.first, window.last)
    label_events = lake.read_spark(spark, SILVER_INTERACTIONS.name, label_dates)
    if label_events.limit(1).count() == 0:
        log.info("no events between %s and %s: no ranker examples for %s", window.first,
                 window.last, ds)
        return {**summary, "skipped": "no events in the label window"}
    share = example_user_share(positive_pairs(label_events, settings.ranker),
                               settings.ranker, settings.candidates.per_user)
    summary["user_share"] = share
    if share < 1.0:
        keep = sampled_users(share, settings.ranker.seed, window.ds)
        label_events = label_events.where(keep)
    first, _ = training_window(settings, window.source_ds)
    past_events = lake.read_spark(spark, SILVER_INTERACTIONS.name,
                                  dates_between(available, first, window.last))
    candidates = lake.read_spark(spark, CANDIDATES.name, [window.source_ds])
    if share < 1.0:
        candidates = candidates.where(keep)
    inputs = feature_inputs(spark, lake, settings, window.source_ds)
    catalogue = np.asarray(sorted(inputs.side_broadcast.value.row_of), dtype=object)
    examples = build_examples(candidates, label_events, past_events,
                              spark.sparkContext.broadcast(catalogue), inputs,
                              settings.ranker, window)
    version = lake.write_spark(EXAMPLES.name, examples, [ds])
    written = lake.read_spark(spark, EXAMPLES.name, [ds])
    by_origin = dict(sorted(written.groupBy("origin").count().collect()))
    totals = written.agg(F.count(F.lit(1)).alias("rows"),
                         F.sum(LABEL_COLUMN).alias("positives"),
                         F.countDistinct("user_id").alias("users")).collect()[0]
    rows, positives, users = totals["rows"], int(totals["positives"] or 0), totals["users"]
    log.info("ranker examples of %s: %d rows, %d positives, %d users", ds, rows, positives,
             users)
    return {**summary, "rows": rows, "positives": positives, "users": users,
            "by_origin": by_origin, "version": version}
