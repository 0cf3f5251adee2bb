"""Random negatives of a date's ranker examples.

``ranker.negatives_ratio`` random negatives per positive are drawn, seeded per user and
date, among catalogue items the user has no candidate row and no event with, so a rerun
draws the same items.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.tables import (
    LABEL_COLUMN,
    WEIGHT_COLUMN,
)
from training.labels import ORIGIN_RANDOM

log = logging.getLogger(__name__)


def draw_negatives(catalogue: np.ndarray, excluded: set[str], n: int,
                   rng: np.random.Generator) -> list[str]:
    """``n`` distinct items of ``catalogue`` outside ``excluded``, drawn uniformly.

    Fewer come back when fewer are allowed. While at least half of the catalogue is allowed
    the draw is by rejection (cost O(n)); otherwise from the list of allowed items.

    Args:
        catalogue: (N,) item ids (a fixed order: the draw depends on it).
        excluded: ids never drawn (may hold ids outside the catalogue).
        n: how many to draw.
        rng: the generator (see :func:`negative_rng`).
    """
    if n <= 0 or len(catalogue) == 0:
        return []
    if 2 * len(excluded) >= len(catalogue):
        pool = [str(i) for i in catalogue if i not in excluded]
        picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        return [pool[j] for j in picks]
    n = min(n, len(catalogue) - len(excluded))
    picked: dict[str, None] = {}
    while len(picked) < n:
        for j in rng.integers(0, len(catalogue), size=2 * n):
            item = str(catalogue[j])
            if item not in excluded:
                picked.setdefault(item)
                if len(picked) == n:
                    break
    return list(picked)


def negative_rng(seed: int, user_id: str, ds: str) -> np.random.Generator:
    """The random-negative generator of one user and date (independent of partitioning)."""
    return np.random.default_rng([seed, zlib.crc32(f"{user_id}|{ds}|negatives".encode())])


def random_negatives(wanted: DataFrame, catalogue_broadcast: Any, seed: int, ds: str
                     ) -> DataFrame:
    """Random negatives per user.

    Args:
        wanted: ``user_id, n, excluded`` (how many to draw, items never to draw).
        catalogue_broadcast: broadcast (N,) array of item ids.
        seed: the ranker seed.
        ds: the examples' date (part of each user's generator seed).

    Returns:
        ``user_id, item_id, label`` (0), ``weight`` (1), ``origin`` (``random``).
    """
    schema = T.StructType([T.StructField("user_id", T.StringType(), False),
                           T.StructField("item_id", T.StringType(), False)])

    def body(batches):
        catalogue = catalogue_broadcast.value
        for batch in batches:
            users, items = [], []
            for row in batch.to_pylist():
                got = draw_negatives(catalogue, set(row["excluded"] or ()), int(row["n"]),
                                     negative_rng(seed, row["user_id"], ds))
                users += [row["user_id"]] * len(got)
                items += got
            yield pa.RecordBatch.from_pydict(
                {"user_id": pa.array(users, pa.string()), "item_id": pa.array(items, pa.string())})

    return (wanted.mapInArrow(body, schema)
            .select("user_id", "item_id", F.lit(0.0).alias(LABEL_COLUMN),
                    F.lit(1.0).alias(WEIGHT_COLUMN), F.lit(ORIGIN_RANDOM).alias("origin")))


def negatives_wanted(labelled: DataFrame, events: DataFrame, ratio: float) -> DataFrame:
    """Per user with positives: ``n = round(ratio * positive rows)`` and the ``excluded``
    items (their example rows and every item they had an event with).

    Args:
        labelled: example rows so far (``user_id, item_id, label``).
        events: the users' events up to the label cutoff (``user_id, item_id``).
        ratio: random negatives per positive.
    """
    counts = (labelled.groupBy("user_id")
              .agg(F.sum(LABEL_COLUMN).alias("_pos"))
              .where(F.col("_pos") > 0)
              .select("user_id", F.round(F.col("_pos") * ratio).cast("int").alias("n")))
    seen = (labelled.select("user_id", "item_id")
            .unionByName(events.select("user_id", "item_id"))
            .join(counts.select("user_id"), "user_id", "left_semi")
            .groupBy("user_id").agg(F.collect_set("item_id").alias("excluded")))
    return counts.join(seen, "user_id", "left")
