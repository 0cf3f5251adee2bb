"""``recpipe ranker examples``: labelled ranker examples from earlier candidates, and the
candidate features shared with batch scoring.

Temporal design (C(D) = D - ``matrix.holdout_days``, the training cutoff of D, see
:func:`jobs.window.training_window`): the examples of D are the candidates of the earlier
date D' = D - ``ranker.label_days`` (``gold/candidates/ds=D'``, built from events up to
C(D')), labelled by the positive events of the label window C(D') < event_date <= C(D):

- a candidate with a positive event (``ranker.label_event_weights``; a rating from
  ``ranker.label_min_rating``) is a positive, weighted by its event type;
- the other candidates are hard negatives (weight 1);
- ``ranker.negatives_ratio`` random negatives per positive are drawn (seeded per user and
  date) among catalogue items the user has no candidate row and no event with;
- with ``ranker.add_missed_positives`` the positives the candidates missed are added too.

Features (:data:`jobs.tables.EXAMPLE_SPARSE_COLUMNS` / ``EXAMPLE_DENSE_COLUMNS``) are built with
Spark from the gold and silver tables of the candidates' own date (D' for examples, D when
scoring): joins for the user and item columns, and one ``mapInArrow`` pass with the item
side broadcast (ALS and content vectors, the co-visitation graph) for the three features
that combine a user's history with the item. Output: ``gold/ranker_examples/ds=D``.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conf import Settings
from conf.ranker import RankerSettings
from jobs.asof import latest_partition_at_or_before
from jobs.lake import Lake
from jobs.tables import (
    CANDIDATES,
    COVISITATION,
    EXAMPLES,
    ITEM_CONTENT,
    ITEM_EMBEDDINGS,
    LABEL_COLUMN,
    POPULARITY,
    SILVER_INTERACTIONS,
    SILVER_ITEMS,
    SILVER_USERS,
    USER_EMBEDDINGS,
    WEIGHT_COLUMN,
)
from jobs.window import dates_between, training_window

log = logging.getLogger(__name__)

ORIGIN_CANDIDATE, ORIGIN_MISSED, ORIGIN_RANDOM = "candidate", "missed", "random"
"""``origin`` of an example row: a candidate, a missed positive, a random negative."""
HISTORY_ITEMS = 10
"""Most recent distinct items per user behind ``content_sim`` and ``covis_score``
(weights ``1 / (1 + position)``, as the session and content retrievers use them)."""
_SECONDS_PER_DAY = 86400.0

"""One row per (user, item) of the examples of ``ds``, built from the candidates of
``source_ds``."""


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
        ``user_id, item_id, weight``: one row per pair with a positive event; the weight is
        the largest of its positive events' type weights.
    """
    if not cfg.label_event_weights:
        return events.select("user_id", "item_id", F.lit(1.0).alias(WEIGHT_COLUMN)).limit(0)
    weight = F.lit(None).cast("double")
    for event_type, w in sorted(cfg.label_event_weights.items()):
        weight = F.when(F.col("event_type") == event_type, F.lit(float(w))).otherwise(weight)
    rating_ok = (F.col("event_type") != "rating") | (
        F.col("value").isNotNull() & (F.col("value") >= cfg.label_min_rating))
    return (events.where(rating_ok).select("user_id", "item_id", weight.alias("w"))
            .where(F.col("w").isNotNull())
            .groupBy("user_id", "item_id").agg(F.max("w").alias(WEIGHT_COLUMN)))


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


# -- features -------------------------------------------------------------------------------
@dataclass
class ItemSide:
    """Item-side arrays broadcast to the feature pass.

    Attributes:
        item_ids: (N,) item ids; row ``i`` of the matrices is item ``i``.
        als: float32 (N, D) ALS item vectors (content-mapped vectors for items without
            one; zero rows with ``has_als`` False when neither exists).
        has_als: bool (N,).
        content: float32 (N, C) L2-normalised content vectors (zero rows when missing).
        covis: (N, N) CSR co-visitation scores (row: item, columns: its neighbours).
    """

    item_ids: np.ndarray
    als: np.ndarray
    has_als: np.ndarray
    content: np.ndarray
    covis: sp.csr_matrix
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name, arr in (("als", self.als), ("has_als", self.has_als),
                          ("content", self.content)):
            if arr.shape[0] != n:
                raise ValueError(f"ItemSide.{name} has {arr.shape[0]} rows for {n} items")
        if self.covis.shape != (n, n):
            raise ValueError(f"ItemSide.covis has shape {self.covis.shape}, want ({n}, {n})")
        self.row_of = {str(item): i for i, item in enumerate(self.item_ids)}

    def rows(self, ids: list[str | None]) -> np.ndarray:
        """(B,) int64 rows of ``ids``; -1 for unknown or null ids."""
        return np.fromiter((self.row_of.get(i, -1) if i is not None else -1 for i in ids),
                           dtype=np.int64, count=len(ids))


def _matrix(table: pa.Table, column: str) -> np.ndarray:
    """A list<float> column as float32 (N, D), D its longest row; shorter rows are zeros."""
    values = table.column(column).combine_chunks()
    if table.num_rows == 0 or values.null_count == len(values):
        return np.zeros((table.num_rows, 0), np.float32)
    dim = int(pc.max(pc.list_value_length(values)).as_py() or 0)
    return list_matrix(values, dim)[0]


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def build_item_side(item_ids: list[str], embeddings: pa.Table, content: pa.Table,
                    covisitation: pa.Table) -> ItemSide:
    """Assemble the item side from gold rows (pure).

    Args:
        item_ids: the catalogue; items of the other tables are added.
        embeddings: ``gold/item_embeddings`` rows (``id, vector``).
        content: ``gold/item_content`` rows (``id, vector, content_vector``): ``vector``
            stands in for items without an ALS vector.
        covisitation: ``gold/covisitation`` rows (``item_id, neighbor_id, score``).
    """
    ids = sorted(set(item_ids) | set(embeddings.column("id").to_pylist())
                 | set(content.column("id").to_pylist()))
    row_of = {item: i for i, item in enumerate(ids)}
    n = len(ids)
    emb = _matrix(embeddings, "vector")
    mapped = _matrix(content, "vector")
    dim = emb.shape[1] if emb.size else mapped.shape[1]
    als = np.zeros((n, dim), np.float32)
    has = np.zeros(n, bool)
    if mapped.shape[1] == dim and content.num_rows:
        rows = np.array([row_of[i] for i in content.column("id").to_pylist()])
        als[rows], has[rows] = mapped, True
    if emb.size:
        rows = np.array([row_of[i] for i in embeddings.column("id").to_pylist()])
        als[rows], has[rows] = emb, True
    raw = _matrix(content, "content_vector") if "content_vector" in content.column_names \
        else np.zeros((content.num_rows, 0), np.float32)
    cvec = np.zeros((n, max(raw.shape[1], 1)), np.float32)
    if raw.shape[1]:
        rows = np.array([row_of[i] for i in content.column("id").to_pylist()])
        cvec[rows] = _unit(raw)
    src = covisitation.column("item_id").to_pylist()
    dst = covisitation.column("neighbor_id").to_pylist()
    keep = [(row_of[a], row_of[b], s) for a, b, s in zip(
        src, dst, covisitation.column("score").to_pylist(), strict=True)
        if a in row_of and b in row_of]
    covis = sp.csr_matrix(([k[2] for k in keep], ([k[0] for k in keep], [k[1] for k in keep])),
                          shape=(n, n), dtype=np.float32)
    return ItemSide(np.asarray(ids, dtype=object), als, has, cvec, covis)


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


def history_weights(length: int) -> np.ndarray:
    """Weights ``1 / (1 + position)`` of a history ordered most recent first."""
    return 1.0 / (1.0 + np.arange(length, dtype=np.float32))


def vector_features(batch: pa.RecordBatch, side: ItemSide) -> dict[str, np.ndarray]:
    """``als_dot``, ``content_sim`` and ``covis_score`` of B (user, item) rows (pure).

    Args:
        batch: rows with ``item_id``, ``user_vector`` (list<float>, may be null) and
            ``history`` (list<string>, the user's recent items, most recent first).
        side: the item side.

    Returns:
        float64 (B,) arrays, NaN where undefined: ``als_dot`` = user vector . item vector;
        ``content_sim`` = cosine of the history's weighted content profile with the item's
        content vector; ``covis_score`` = sum over the history of weight x co-visitation
        score with the item (0 without history).
    """
    b = batch.num_rows
    item_rows = side.rows(batch.column("item_id").to_pylist())
    known = item_rows >= 0
    safe_rows = np.maximum(item_rows, 0)
    als_dot = np.full(b, np.nan)
    users, has_user = list_matrix(batch.column("user_vector"), side.als.shape[1])
    ok = has_user & known & side.has_als[safe_rows]
    if ok.any():
        als_dot[ok] = np.einsum("bd,bd->b", users[ok], side.als[item_rows[ok]])
    histories = batch.column("history").to_pylist()
    hist_rows = [side.rows(list(h or []))[: HISTORY_ITEMS] for h in histories]
    hist_rows = [h[h >= 0] for h in hist_rows]
    lengths = np.array([len(h) for h in hist_rows])
    indptr = np.r_[0, np.cumsum(lengths)]
    weights = np.concatenate([history_weights(len(h)) for h in hist_rows]) if b else \
        np.zeros(0, np.float32)
    hist = sp.csr_matrix((weights, np.concatenate(hist_rows) if b else np.zeros(0, np.int64),
                          indptr), shape=(b, len(side.item_ids)))
    profile = _unit(np.asarray(hist @ side.content, dtype=np.float32))
    content_sim = np.full(b, np.nan)
    has_profile = np.linalg.norm(profile, axis=1) > 0
    item_content = side.content[safe_rows]
    has_content = known & (np.linalg.norm(item_content, axis=1) > 0)
    ok = has_profile & has_content
    content_sim[ok] = np.einsum("bc,bc->b", profile[ok], item_content[ok])
    covis = np.zeros(b)
    with_hist = np.flatnonzero((lengths > 0) & known)
    if len(with_hist):
        scores = (hist[with_hist] @ side.covis).tocsr()
        covis[with_hist] = np.asarray(
            scores[np.arange(len(with_hist)), item_rows[with_hist]]).ravel()
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
        ``pairs`` plus the columns of :func:`training.features.candidate_feature_spec`
        (``retrieval_score`` is 0 and ``retrieval_strategies`` empty for non-candidates).
    """
    sources = F.coalesce(F.col("sources"), F.array().cast("array<string>"))
    df = (pairs
          .withColumn("retrieval_score", F.coalesce(F.col("score").cast("double"), F.lit(0.0)))
          .withColumn("retrieval_strategies", sources)
          .withColumn("n_strategies", F.size(sources).cast("double"))
          .join(inputs.users, "user_id", "left")
          .join(inputs.items, "item_id", "left")
          .withColumn("user_event_count", F.coalesce("user_event_count", F.lit(0.0)))
          .withColumn("item_event_count", F.coalesce("item_event_count", F.lit(0.0)))
          .withColumn("popularity", F.coalesce("popularity", F.lit(0.0))))
    return _vector_pass(df, inputs.side_broadcast)


def feature_inputs(spark: SparkSession, lake: Lake, settings: Settings, ds: str
                   ) -> FeatureInputs:
    """Read the tables the features of ``ds``'s candidates come from.

    Gold tables of ``ds`` itself; ``silver/items`` and ``silver/users`` as of ``ds``; the
    events of the training window of ``ds`` (up to its cutoff).
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
    catalogue = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                                columns=["item_id"]).column("item_id").to_pylist()
    side = build_item_side(
        catalogue,
        lake.read_arrow(ITEM_EMBEDDINGS.name, [ds], columns=["id", "vector"]),
        lake.read_arrow(ITEM_CONTENT.name, [ds], columns=["id", "vector", "content_vector"]),
        lake.read_arrow(COVISITATION.name, [ds], columns=["item_id", "neighbor_id", "score"]))
    log.info("feature inputs of %s: %d items on the item side (ALS dim %d, content dim %d)",
             ds, len(side.item_ids), side.als.shape[1], side.content.shape[1])
    return FeatureInputs(
        users=user_frame(events, users, user_vectors, settings.ranker, cutoff),
        items=item_frame(items, popularity, events, ds),
        side_broadcast=spark.sparkContext.broadcast(side),
    )


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
    first, _ = training_window(settings, window.source_ds)
    past_events = lake.read_spark(spark, SILVER_INTERACTIONS.name,
                                  dates_between(available, first, window.last))
    candidates = lake.read_spark(spark, CANDIDATES.name, [window.source_ds])
    inputs = feature_inputs(spark, lake, settings, window.source_ds)
    catalogue = np.asarray(sorted(inputs.side_broadcast.value.row_of), dtype=object)
    examples = build_examples(candidates, label_events, past_events,
                              spark.sparkContext.broadcast(catalogue), inputs,
                              settings.ranker, window)
    version = lake.write_spark(EXAMPLES.name, examples, [ds])
    stats = lake.read_arrow(EXAMPLES.name, [ds], columns=["user_id", "origin", LABEL_COLUMN])
    by_origin: dict[str, int] = {}
    for origin in stats.column("origin").to_pylist():
        by_origin[origin] = by_origin.get(origin, 0) + 1
    positives = int(sum(stats.column(LABEL_COLUMN).to_pylist()))
    users = len(set(stats.column("user_id").to_pylist()))
    log.info("ranker examples of %s: %d rows, %d positives, %d users", ds, stats.num_rows,
             positives, users)
    return {**summary, "rows": stats.num_rows, "positives": positives, "users": users,
            "by_origin": by_origin, "version": version}


# -- splitting and scoring examples ---------------------------------------------------------
def split_by_user(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """``(train, valid)`` rows of ``table``: ``ceil(fraction * users)`` users, drawn with
    ``seed`` from the sorted user ids, hold all their rows out.

    Raises:
        ValueError: ``fraction`` is not in (0, 1), or there are fewer than two users.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    users = np.array(sorted(set(table.column("user_id").to_pylist())), dtype=object)
    if len(users) < 2:
        raise ValueError(f"splitting by user needs at least 2 users, got {len(users)}")
    n_valid = min(len(users) - 1, max(1, int(np.ceil(fraction * len(users)))))
    order = np.random.default_rng(seed).permutation(len(users))
    valid_users = pa.array(users[order[:n_valid]].tolist(), pa.string())
    held = pc.is_in(table.column("user_id"), value_set=valid_users)
    return table.filter(pc.invert(held)), table.filter(held)


def candidate_lists(user_ids: list[str], item_ids: list[str], scores: np.ndarray,
                    labels: np.ndarray, k: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Per user, the top-``k`` rows by score and the positive rows, for
    :mod:`evaluation.metrics`.

    Users without a positive row are left out (their NDCG is undefined).

    Args:
        user_ids, item_ids: (R,) the rows' user and item.
        scores: (R,) the ordering score, higher first (ties: item id ascending).
        labels: (R,) 1 for a positive row.
        k: list length.

    Returns:
        ``(recs, truth)``: int64 (U, k) item indices padded with -1, and the binary CSR
        (U, I) truth over the same item indices.
    """
    users = np.asarray(user_ids, dtype=object)
    items = np.asarray(item_ids, dtype=object)
    labels = np.asarray(labels) > 0
    keep_users = np.array(sorted(set(users[labels].tolist())), dtype=object)
    if len(keep_users) == 0:
        return np.full((0, k), -1, np.int64), sp.csr_matrix((0, 0))
    upos = {u: i for i, u in enumerate(keep_users)}
    u = np.fromiter((upos.get(x, -1) for x in users), np.int64, len(users))
    sel = u >= 0
    item_index = {it: i for i, it in enumerate(sorted(set(items[sel].tolist())))}
    it = np.fromiter((item_index[x] for x in items[sel]), np.int64, int(sel.sum()))
    u, s, lab = u[sel], np.asarray(scores, np.float64)[sel], labels[sel]
    order = np.lexsort((it, -s, u))
    u_sorted, it_sorted = u[order], it[order]
    starts = np.searchsorted(u_sorted, np.arange(len(keep_users)))
    pos = np.arange(len(u_sorted)) - starts[u_sorted]
    recs = np.full((len(keep_users), k), -1, np.int64)
    fits = pos < k
    recs[u_sorted[fits], pos[fits]] = it_sorted[fits]
    truth = sp.csr_matrix((np.ones(int(lab.sum())), (u[lab], it[lab])),
                          shape=(len(keep_users), len(item_index)))
    truth.sum_duplicates()
    truth.data[:] = 1.0
    return recs, truth
