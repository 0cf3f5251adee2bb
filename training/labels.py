"""The labels of a date's ranker examples: which earlier candidates, which events label them.

Temporal design (C(D) = D - ``matrix.holdout_days``, the training cutoff of D, see
:func:`algorithms.window.training_window`): the examples of D are the candidates of the
earlier date D' = D - ``ranker.label_days`` (``gold/candidates/ds=D'``, built from events up
to C(D')), labelled by the positive events of the label window C(D') < event_date <= C(D):

- a candidate with a positive event (``ranker.label_event_weights``; a rating from
  ``ranker.label_min_rating``) is a positive, weighted by its event type;
- the other candidates are hard negatives (weight 1);
- with ``ranker.add_missed_positives`` the positives the candidates missed are added too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from algorithms.window import training_window
from conf import Settings
from conf.pipeline import NEGATIVE_FEEDBACK
from conf.ranker import RankerSettings
from jobs.tables import (
    LABEL_COLUMN,
    WEIGHT_COLUMN,
)

log = logging.getLogger(__name__)

ORIGIN_CANDIDATE, ORIGIN_MISSED, ORIGIN_RANDOM = "candidate", "missed", "random"
"""``origin`` of an example row: a candidate, a missed positive, a random negative."""


# -- dates ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelWindow:
    """Dates of the examples of ``ds``.

    Attributes:
        ds: the logical date the examples (and the model trained on them) belong to.
        source_ds: D', the date of the labelled candidates.
        first: first event date of the label window (C(D') + 1 day).
        last: last event date of the label window (C(D)).
    """

    ds: str
    source_ds: str
    first: str
    last: str


def label_window(settings: Settings, ds: str) -> LabelWindow:
    """The candidates' date and the label window of the examples of ``ds``."""
    source = (date.fromisoformat(ds) - timedelta(days=settings.ranker.label_days)).isoformat()
    _, source_cutoff = training_window(settings, source)
    _, cutoff = training_window(settings, ds)
    first = (date.fromisoformat(source_cutoff) + timedelta(days=1)).isoformat()
    return LabelWindow(ds=ds, source_ds=source, first=first, last=cutoff)


def window_dates(settings: Settings, ds: str) -> list[str]:
    """The dates whose examples the ranker of ``ds`` trains on, newest first: ``ds`` and
    ``ds - k * ranker.label_days`` for ``0 < k < ranker.example_windows``."""
    day, step = date.fromisoformat(ds), settings.ranker.label_days
    return [(day - timedelta(days=k * step)).isoformat()
            for k in range(settings.ranker.example_windows)]


# -- labels ---------------------------------------------------------------------------------
def positive_pairs(events: DataFrame, cfg: RankerSettings) -> DataFrame:
    """Positive (user, item) pairs of ``events`` with their example weight.

    Args:
        events: ``user_id, item_id, event_type, value`` rows of the label window.
        cfg: ``label_event_weights`` (positive types and weights), ``label_min_rating``.

    Returns:
        ``user_id, item_id, weight``: one row per pair with a positive event and no negative
        feedback (a pair the user hid or disliked in the window is a negative however it was
        clicked); the weight is the largest of its positive events' type weights.
    """
    if not cfg.label_event_weights:
        return events.select("user_id", "item_id", F.lit(1.0).alias(WEIGHT_COLUMN)).limit(0)
    weight = F.lit(None).cast("double")
    for event_type, w in sorted(cfg.label_event_weights.items()):
        weight = F.when(F.col("event_type") == event_type, F.lit(float(w))).otherwise(weight)
    rating_ok = (F.col("event_type") != "rating") | (
        F.col("value").isNotNull() & (F.col("value") >= cfg.label_min_rating))
    said_no = (events.where(F.col("event_type").isin(*NEGATIVE_FEEDBACK))
               .select("user_id", "item_id").distinct())
    return (events.where(rating_ok).select("user_id", "item_id", weight.alias("w"))
            .where(F.col("w").isNotNull())
            .groupBy("user_id", "item_id").agg(F.max("w").alias(WEIGHT_COLUMN))
            .join(said_no, ["user_id", "item_id"], "left_anti"))


def label_candidates(candidates: DataFrame, positives: DataFrame,
                     positive_users_only: bool) -> DataFrame:
    """Candidate rows with ``label`` (1 for a positive pair, else 0) and ``weight``.

    Args:
        candidates: ``gold/candidates`` rows (at least ``user_id, item_id``).
        positives: :func:`positive_pairs` of the label window.
        positive_users_only: drop the users without any positive pair.

    Returns:
        The candidate columns plus ``label`` (double), ``weight`` (the positive's weight,
        1 for a negative) and ``origin`` = ``candidate``.
    """
    pos = positives.select("user_id", "item_id", F.col(WEIGHT_COLUMN).alias("_pos_w"))
    out = (candidates.join(pos, ["user_id", "item_id"], "left")
           .withColumn(LABEL_COLUMN, F.when(F.col("_pos_w").isNotNull(), 1.0).otherwise(0.0))
           .withColumn(WEIGHT_COLUMN, F.coalesce(F.col("_pos_w"), F.lit(1.0)))
           .drop("_pos_w").withColumn("origin", F.lit(ORIGIN_CANDIDATE)))
    if positive_users_only:
        out = out.join(positives.select("user_id").distinct(), "user_id", "left_semi")
    return out


def missed_positives(candidates: DataFrame, positives: DataFrame) -> DataFrame:
    """Positive pairs of candidate users that are not candidates: ``user_id, item_id,
    label, weight, origin`` (``missed``)."""
    users = candidates.select("user_id").distinct()
    return (positives.join(users, "user_id", "left_semi")
            .join(candidates.select("user_id", "item_id"), ["user_id", "item_id"], "left_anti")
            .select("user_id", "item_id", F.lit(1.0).alias(LABEL_COLUMN),
                    F.col(WEIGHT_COLUMN), F.lit(ORIGIN_MISSED).alias("origin")))
