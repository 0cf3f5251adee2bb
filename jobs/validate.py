"""Validation of raw events: pure Spark transforms, no paths, no session.

``validate_events`` types each raw row and gives it a ``reason`` (null when valid). The
reasons, in the order they are checked:

- ``malformed_row``: the reader could not split the row into fields.
- ``missing_event_id`` / ``missing_user_id`` / ``missing_item_id``: null or blank.
- ``unknown_event_type``: not one of the known event types.
- ``bad_ts``: not ISO-8601 and not epoch seconds. ``ts_out_of_range``: before
  ``ingest.min_ts`` or after the end of ``ds`` plus ``ingest.max_future_days``.
- ``bad_value``: not a finite number. ``missing_rating``: a rating without a value.
  ``rating_out_of_range``: outside ``[rating_min, rating_max]``. ``negative_dwell`` /
  ``dwell_out_of_range``: a view's dwell below 0 or above ``max_dwell_s``.

``resolve_duplicates`` then separates exact repeats of an ``event_id`` (counted as
duplicates) from repeats with different content (``conflicting_duplicate``).
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from conf.pipeline import EVENT_TYPES, IngestSettings

CORRUPT = "raw_record"


def _blank(col: str) -> Column:
    return F.col(col).isNull() | (F.trim(F.col(col)) == "")


def parse_ts(col: Column) -> Column:
    """Timestamp from ISO-8601 text or epoch seconds (integer or decimal); null if neither."""
    text = F.trim(col)
    epoch = F.when(text.rlike(r"^-?\d+(\.\d+)?$"),
                   F.timestamp_micros((text.cast("decimal(20,6)") * 1_000_000).cast("long")))
    return F.coalesce(epoch, F.try_to_timestamp(text))


def validate_events(raw: DataFrame, cfg: IngestSettings, ds: str) -> DataFrame:
    """Type raw events and attach a validation ``reason`` (null when the row is valid).

    Args:
        raw: string columns ``event_id, user_id, item_id, event_type, value, ts, surface``
            and optionally ``raw_record`` (text of a row that could not be split).
        cfg: validation bounds.
        ds: the ingest date ``YYYY-MM-DD``; events after its end plus
            ``cfg.max_future_days`` are out of range.

    Returns:
        ``raw`` plus typed ``ts_parsed`` (timestamp), ``value_num`` (double), ``etype``
        (normalised event type) and ``reason`` (string or null).
    """
    horizon = (date.fromisoformat(ds) + timedelta(days=1 + cfg.max_future_days)).isoformat()
    corrupt = F.col(CORRUPT).isNotNull() if CORRUPT in raw.columns else F.lit(False)
    etype = F.lower(F.trim(F.col("event_type")))
    value_text = F.trim(F.col("value"))
    value_num = F.expr("try_cast(trim(value) as double)")
    has_value = F.col("value").isNotNull() & (value_text != "")
    ts = parse_ts(F.col("ts"))
    finite = ~F.isnan(value_num) & (F.abs(value_num) != F.lit(float("inf")))
    df = (raw.withColumn("etype", etype)
             .withColumn("value_num", F.when(has_value, value_num))
             .withColumn("ts_parsed", ts))
    v = F.col("value_num")
    reason = (
        F.when(corrupt, "malformed_row")
        .when(_blank("event_id"), "missing_event_id")
        .when(_blank("user_id"), "missing_user_id")
        .when(_blank("item_id"), "missing_item_id")
        .when(F.col("etype").isNull() | ~F.col("etype").isin(*EVENT_TYPES),
              "unknown_event_type")
        .when(F.col("ts_parsed").isNull(), "bad_ts")
        .when((F.col("ts_parsed") < F.lit(cfg.min_ts).cast("timestamp"))
              | (F.col("ts_parsed") >= F.lit(horizon).cast("timestamp")), "ts_out_of_range")
        .when(has_value & (value_num.isNull() | ~finite), "bad_value")
        .when((F.col("etype") == "rating") & v.isNull(), "missing_rating")
        .when((F.col("etype") == "rating") & ((v < cfg.rating_min) | (v > cfg.rating_max)),
              "rating_out_of_range")
        .when((F.col("etype") == "view") & (v < 0), "negative_dwell")
        .when((F.col("etype") == "view") & (v > cfg.max_dwell_s), "dwell_out_of_range")
    )
    return df.withColumn("reason", reason)


def typed_interactions(valid: DataFrame) -> DataFrame:
    """Silver columns (plus lineage ``_source``, ``_row``, ``_batch`` when present) from
    validated rows: trimmed ids, typed value and ts, ``content_hash`` and ``event_date``."""
    surface = F.when(F.trim(F.col("surface")) != "", F.trim(F.col("surface")))
    out = valid.select(
        F.trim("event_id").alias("event_id"),
        F.trim("user_id").alias("user_id"),
        F.trim("item_id").alias("item_id"),
        F.col("etype").alias("event_type"),
        F.col("value_num").alias("value"),
        F.col("ts_parsed").alias("ts"),
        surface.alias("surface"),
        *[c for c in ("_source", "_row", "_batch") if c in valid.columns],
    )
    content = F.sha2(F.concat_ws("\u0001", "user_id", "item_id", "event_type",
                                 F.coalesce(F.col("value").cast("string"), F.lit("")),
                                 F.col("ts").cast("long").cast("string"),
                                 F.coalesce("surface", F.lit(""))), 256)
    return (out.withColumn("content_hash", content)
               .withColumn("event_date", F.date_format("ts", "yyyy-MM-dd")))


def resolve_duplicates(new: DataFrame, existing: DataFrame) -> tuple[DataFrame, DataFrame,
                                                                       DataFrame]:
    """Split typed new rows into (accepted, exact duplicates, conflicting duplicates).

    An ``event_id`` already stored with the same content, or repeated identically within the
    batch beyond its first row, is a duplicate (kept once). An ``event_id`` seen with
    different content (in the batch or stored) is a conflict: every new row of that id goes
    to quarantine and the stored row is kept.

    Args:
        new: typed rows (``typed_interactions``) with ``_row`` for a stable order.
        existing: stored silver rows (``event_id``, ``content_hash``) that may share ids.
    """
    per_id = Window.partitionBy("event_id")
    first = Window.partitionBy("event_id", "content_hash").orderBy("_source", "_row")
    stored = existing.select("event_id", F.col("content_hash").alias("stored_hash"))
    tagged = (new.withColumn("n_variants", F.size(F.collect_set("content_hash").over(per_id)))
                 .withColumn("rank", F.row_number().over(first))
                 .join(stored, "event_id", "left"))
    conflict = (tagged.n_variants > 1) | (tagged.stored_hash.isNotNull()
                                          & (tagged.stored_hash != tagged.content_hash))
    duplicate = ~conflict & ((tagged["rank"] > 1) | tagged.stored_hash.isNotNull())
    drop = ["n_variants", "rank", "stored_hash"]
    return (tagged.where(~conflict & ~duplicate).drop(*drop),
            tagged.where(duplicate).drop(*drop),
            tagged.where(conflict).drop(*drop))
