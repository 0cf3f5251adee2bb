"""The ranker's candidate features, built with Spark from a date's gold and silver tables.

Features (:data:`algorithms.ranker.features.EXAMPLE_SPARSE_COLUMNS` /
``EXAMPLE_DENSE_COLUMNS``) are built from the tables of the candidates' own date (D' for
training examples, D when the precompute scores): joins for the user and item columns, and
one ``mapInArrow`` pass with the item side broadcast (ALS and content vectors, the
co-visitation graph) for the three features that combine a user's history with the item.
Training (:mod:`training.examples`) and scoring (:mod:`jobs.rank_candidates`) both call
:func:`add_features`, so a feature is computed the same way in both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from algorithms.window import dates_between, training_window
from conf import Settings
from conf.ranker import RankerSettings
from jobs.asof import latest_partition_at_or_before
from jobs.item_side import ItemSide, read_item_context
from jobs.lake import Lake
from jobs.tables import (
    POPULARITY,
    SILVER_INTERACTIONS,
    SILVER_ITEMS,
    SILVER_USERS,
    USER_EMBEDDINGS,
)

log = logging.getLogger(__name__)
HISTORY_ITEMS = 10
"""Most recent distinct items per user behind ``content_sim`` and ``covis_score``
(weights ``1 / (1 + position)``, as the session and content retrievers use them)."""
_SECONDS_PER_DAY = 86400.0


# -- features -------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def list_matrix(values: pa.Array | pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a list<float> column as float32 (B, dim); ``ok`` (B,) marks the rows holding
    exactly ``dim`` values (the others, nulls included, are zero rows)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.float32)
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    ok = lengths == dim
    out = np.zeros((len(values), dim), np.float32)
    if ok.any() and dim:
        out[ok] = flat[starts[ok][:, None] + np.arange(dim)]
    return out, ok


def history_matrix(histories: pa.Array, side: ItemSide) -> sp.csr_matrix:
    """(U, N) CSR of U histories (list<string>, most recent first): each history's first
    ``HISTORY_ITEMS`` ids, the unknown ones then dropped, weighted ``1 / (1 + position)``
    among those kept."""
    sliced = pc.list_slice(histories, 0, HISTORY_ITEMS)
    rows = side.rows(pc.list_flatten(sliced))
    owner = pc.list_parent_indices(sliced).to_numpy(zero_copy_only=False).astype(np.int64)
    kept = rows >= 0
    rows, owner = rows[kept], owner[kept]
    counts = np.bincount(owner, minlength=len(histories))
    indptr = np.r_[0, np.cumsum(counts)]
    position = np.arange(len(rows)) - indptr[owner]
    weights = (1.0 / (1.0 + position)).astype(np.float32)
    return sp.csr_matrix((weights, rows, indptr), shape=(len(histories), len(side.item_ids)))


def vector_features(batch: pa.RecordBatch, side: ItemSide) -> dict[str, np.ndarray]:
    """``als_dot``, ``content_sim`` and ``covis_score`` of B (user, item) rows (pure).

    The user side (vector, history profile, co-visitation with the history) is computed
    once per distinct user of the batch, then read per row.

    Args:
        batch: rows with ``user_id``, ``item_id``, ``user_vector`` (list<float>, may be
            null) and ``history`` (list<string>, the user's recent items, most recent first;
            the same on every row of a user).
        side: the item side.

    Returns:
        float64 (B,) arrays, NaN where undefined: ``als_dot`` = user vector . item vector;
        ``content_sim`` = cosine of the history's weighted content profile with the item's
        content vector; ``covis_score`` = sum over the history of weight x co-visitation
        score with the item (0 without history).
    """
    b = batch.num_rows
    item_rows = side.rows(batch.column("item_id"))
    known = item_rows >= 0
    safe_rows = np.maximum(item_rows, 0)
    codes = pc.dictionary_encode(batch.column("user_id")).indices.to_numpy(
        zero_copy_only=False)
    _, first, user = np.unique(codes, return_index=True, return_inverse=True)
    take = pa.array(first)
    als_dot = np.full(b, np.nan)
    vectors, has_vector = list_matrix(batch.column("user_vector").take(take),
                                      side.als.shape[1])
    ok = has_vector[user] & known & side.has_als[safe_rows]
    if ok.any():
        als_dot[ok] = np.einsum("bd,bd->b", vectors[user[ok]], side.als[item_rows[ok]])
    hist = history_matrix(batch.column("history").take(take), side)
    profile = _unit(np.asarray(hist @ side.content, dtype=np.float32))
    content_sim = np.full(b, np.nan)
    has_profile = (np.linalg.norm(profile, axis=1) > 0)[user]
    item_content = side.content[safe_rows]
    ok = has_profile & known & (np.linalg.norm(item_content, axis=1) > 0)
    content_sim[ok] = np.einsum("bc,bc->b", profile[user[ok]], item_content[ok])
    covis = np.zeros(b)
    with_hist = np.flatnonzero((np.diff(hist.indptr) > 0)[user] & known)
    if len(with_hist):
        scores = (hist @ side.covis).tocsr()
        covis[with_hist] = np.asarray(
            scores[user[with_hist], item_rows[with_hist]]).ravel()
    return {"als_dot": als_dot, "content_sim": content_sim, "covis_score": covis}


def _vector_pass(df: DataFrame, side_broadcast: Any) -> DataFrame:
    """Add the three history features with one ``mapInArrow`` pass (drops the inputs)."""
    keep = [f for f in df.schema.fields if f.name not in ("user_vector", "history")]
    schema = T.StructType(keep + [T.StructField(n, T.DoubleType(), True)
                                  for n in ("als_dot", "content_sim", "covis_score")])
    names = [f.name for f in keep]

    def body(batches):
        side = side_broadcast.value
        for batch in batches:
            if batch.num_rows == 0:
                continue
            feats = vector_features(batch, side)
            arrays = [batch.column(n) for n in names] + [
                pa.array(feats[n], pa.float64(), from_pandas=True)
                for n in ("als_dot", "content_sim", "covis_score")]
            yield pa.RecordBatch.from_arrays(arrays, names=[*names, *feats])

    return df.mapInArrow(body, schema)


def age_bucket(age: Column, bins: list[float]) -> Column:
    """``b<i>`` with i the number of ``bins`` edges at or below a numeric ``age`` (string
    column); null when the age is missing or not a number."""
    value = age.cast("double")
    count = sum((F.when(value >= float(e), 1).otherwise(0) for e in bins), F.lit(0))
    return F.when(value.isNull(), F.lit(None).cast("string")).otherwise(
        F.concat(F.lit("b"), count.cast("string")))


def user_frame(events: DataFrame, users: DataFrame, vectors: DataFrame, cfg: RankerSettings,
               cutoff: str) -> DataFrame:
    """Per user: attributes, activity and the inputs of the history features.

    Args:
        events: the users' events up to ``cutoff`` (``user_id, item_id, ts``).
        users: ``silver/users`` rows (``user_id, attributes``).
        vectors: ``gold/user_embeddings`` rows (``id, vector``).
        cfg: ``user_attributes`` keys and ``age_bins``.
        cutoff: last event date (inclusive) of ``events``.

    Returns:
        ``user_id, user_age_bucket, user_gender, user_occupation, user_event_count,
        user_recency_days, user_vector, history`` (one row per user of any input).
    """
    keys = cfg.user_attributes
    attrs = users.select(
        "user_id",
        age_bucket(F.element_at("attributes", keys.get("user_age_bucket", "age")),
                   cfg.age_bins).alias("user_age_bucket"),
        F.element_at("attributes", keys.get("user_gender", "gender")).alias("user_gender"),
        F.element_at("attributes", keys.get("user_occupation", "occupation"))
        .alias("user_occupation"),
    )
    end = (date.fromisoformat(cutoff) + timedelta(days=1)).isoformat()
    activity = events.groupBy("user_id").agg(
        F.count(F.lit(1)).cast("double").alias("user_event_count"),
        ((F.unix_timestamp(F.to_timestamp(F.lit(end))) - F.unix_timestamp(F.max("ts")))
         / _SECONDS_PER_DAY).alias("user_recency_days"),
    )
    last = events.groupBy("user_id", "item_id").agg(F.max("ts").alias("t"))
    history = last.groupBy("user_id").agg(
        F.slice(F.sort_array(F.collect_list(F.struct(F.col("t"), F.col("item_id"))),
                             asc=False), 1, HISTORY_ITEMS).getField("item_id").alias("history"))
    vecs = vectors.select(F.col("id").alias("user_id"), F.col("vector").alias("user_vector"))
    return (attrs.join(activity, "user_id", "full").join(history, "user_id", "full")
            .join(vecs, "user_id", "full")
            .withColumn("user_event_count", F.coalesce("user_event_count", F.lit(0.0))))


def item_frame(items: DataFrame, popularity: DataFrame, events: DataFrame, ds: str
               ) -> DataFrame:
    """Per item: ``item_id, item_categories, popularity, item_age_days, item_event_count``.

    Args:
        items: ``silver/items`` rows (``item_id, categories, created_at``).
        popularity: ``gold/popularity`` rows (``segment, item_id, score``); segment ``all``.
        events: events up to the cutoff (``item_id``).
        ds: the date ages are measured at.
    """
    pop = popularity.where(F.col("segment") == "all").select(
        "item_id", F.col("score").alias("popularity"))
    counts = events.groupBy("item_id").agg(F.count(F.lit(1)).cast("double")
                                           .alias("item_event_count"))
    base = items.select(
        "item_id", F.col("categories").alias("item_categories"),
        F.datediff(F.to_date(F.lit(ds)), F.to_date("created_at")).cast("double")
        .alias("item_age_days"))
    return (base.join(pop, "item_id", "full").join(counts, "item_id", "full")
            .withColumn("popularity", F.coalesce("popularity", F.lit(0.0)))
            .withColumn("item_event_count", F.coalesce("item_event_count", F.lit(0.0))))


@dataclass
class FeatureInputs:
    """What :func:`add_features` joins: per-user and per-item frames, the item side."""

    users: DataFrame
    items: DataFrame
    side_broadcast: Any


def add_features(pairs: DataFrame, inputs: FeatureInputs) -> DataFrame:
    """Every candidate feature for (user, item) rows, the input columns kept.

    Args:
        pairs: rows with ``user_id, item_id``, ``score`` (the retrieval blend; null for
            non-candidates) and ``sources`` (strategies; null or empty for non-candidates).
        inputs: see :func:`feature_inputs`.

    Returns:
        ``pairs`` plus the columns of :func:`algorithms.ranker.features.candidate_feature_spec`
        (``retrieval_score`` is 0 and ``retrieval_strategies`` empty for non-candidates).
    """
    sources = F.coalesce(F.col("sources"), F.array().cast("array<string>"))
    df = (pairs
          .withColumn("retrieval_score", F.coalesce(F.col("score").cast("double"), F.lit(0.0)))
          .withColumn("retrieval_strategies", sources)
          .withColumn("n_strategies", F.size(sources).cast("double"))
          .join(inputs.users, "user_id", "left"))
    # the history features while a user's rows are together (the join's partitions are by
    # user), so their user side is computed once per user and batch
    return (_vector_pass(df, inputs.side_broadcast)
            .join(inputs.items, "item_id", "left")
            .withColumn("user_event_count", F.coalesce("user_event_count", F.lit(0.0)))
            .withColumn("item_event_count", F.coalesce("item_event_count", F.lit(0.0)))
            .withColumn("popularity", F.coalesce("popularity", F.lit(0.0))))


def feature_inputs(spark: SparkSession, lake: Lake, settings: Settings, ds: str
                   ) -> FeatureInputs:
    """Read the tables the features of ``ds``'s candidates come from.

    Gold tables of ``ds`` itself (the item side from ``gold/item_context``); ``silver/items``
    and ``silver/users`` as of ``ds``; the events of the training window of ``ds`` (up to its
    cutoff).
    """
    first, cutoff = training_window(settings, ds)
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), first, cutoff)
    events = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    users_ds = latest_partition_at_or_before(lake, SILVER_USERS.name, ds)
    items = lake.read_spark(spark, SILVER_ITEMS.name, [items_ds] if items_ds else [])
    users = lake.read_spark(spark, SILVER_USERS.name, [users_ds] if users_ds else [])
    user_vectors = lake.read_spark(spark, USER_EMBEDDINGS.name, [ds])
    popularity = lake.read_spark(spark, POPULARITY.name, [ds])
    side = read_item_context(lake, ds, settings).feature_side()
    log.info("feature inputs of %s: %d items on the item side (ALS dim %d, content dim %d)",
             ds, len(side.item_ids), side.als.shape[1], side.content.shape[1])
    return FeatureInputs(
        users=user_frame(events, users, user_vectors, settings.ranker, cutoff),
        items=item_frame(items, popularity, events, ds),
        side_broadcast=spark.sparkContext.broadcast(side),
    )
