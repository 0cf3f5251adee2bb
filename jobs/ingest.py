"""``recpipe ingest``: raw events -> ``bronze/events`` -> ``silver/interactions``.

The source's rows are appended to ``bronze/events`` (partition ``ingest_date=ds``) as one
idempotent batch. Silver and quarantine are then rebuilt from the whole bronze partition of
``ds``: valid rows are typed, deduplicated on ``event_id`` and merged into their
``event_date`` partitions of ``silver/interactions``; invalid rows go to ``quarantine/events``
with a reason. Re-running the same source for the same date changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf import Settings
from jobs.cli_common import (
    add_common_args,
    add_landing_arg,
    landing_dir,
    parse_ds,
    settings_from_args,
)
from jobs.lake import Lake
from jobs.sources import CORRUPT, batch_id, list_source_files, read_raw_events
from jobs.tables import BRONZE_EVENTS, QUARANTINE_EVENTS, RAW_EVENT_COLUMNS, SILVER_INTERACTIONS
from jobs.validate import resolve_duplicates, typed_interactions, validate_events

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    """What one ingest did, counted over the rows of this run's source."""

    ds: str
    batch: str
    source_rows: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    bronze_appended: bool = False
    versions: dict[str, int | None] = field(default_factory=dict)


def to_bronze(raw: DataFrame, batch: str, ds: str) -> DataFrame:
    """Bronze rows: raw columns as received plus lineage and ``ingest_date``."""
    return raw.select(*RAW_EVENT_COLUMNS, F.col(CORRUPT).alias("raw_record"), "_source",
                      "_row", F.lit(batch).alias("_batch"), F.lit(ds).alias("ingest_date"))


def split_day(bronze_day: DataFrame, stored: DataFrame, settings: Settings, ds: str
              ) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Validate one bronze day: (accepted silver rows, duplicates, quarantine rows).

    Accepted and duplicate rows keep ``_batch``; quarantine rows have the bronze columns plus
    ``reason``.
    """
    checked = validate_events(bronze_day, settings.ingest, ds)
    bad = checked.where(F.col("reason").isNotNull())
    good = typed_interactions(checked.where(F.col("reason").isNull()))
    accepted, dups, conflicts = resolve_duplicates(good, stored)
    conflict_raw = (bronze_day.join(conflicts.select("_batch", "_source", "_row"),
                                    ["_batch", "_source", "_row"])
                    .withColumn("reason", F.lit("conflicting_duplicate")))
    cols = [*RAW_EVENT_COLUMNS, "reason", "raw_record", "_source", "_row", "_batch",
            "ingest_date"]
    quarantine = bad.select(*cols).unionByName(conflict_raw.select(*cols))
    return accepted, dups, quarantine


def run(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Ingest ``events.parquet`` of the landing folder for ``ds``; the summary as a dict."""
    source = landing_dir(settings, None) / "events.parquet"
    return asdict(ingest_source(spark, settings, ds, source))


def ingest_source(spark: SparkSession, settings: Settings, ds: str, source: str | Path
                  ) -> IngestSummary:
    """Ingest ``source`` for date ``ds``; see the module docstring."""
    lake = Lake(settings)
    files = list_source_files(source)
    batch = batch_id(files, ds)
    summary = IngestSummary(ds=ds, batch=batch)

    raw = read_raw_events(spark, files)
    bronze_rows = to_bronze(raw, batch, ds).toArrow()
    summary.source_rows = bronze_rows.num_rows
    summary.bronze_appended = lake.append(BRONZE_EVENTS.name, bronze_rows, batch)

    day = lake.read_spark(spark, BRONZE_EVENTS.name, [ds]).cache()
    stored = lake.read_spark(spark, SILVER_INTERACTIONS.name).select("event_id",
                                                                       "content_hash")
    accepted, dups, quarantine = split_day(day, stored, settings, ds)
    accepted = accepted.cache()
    quarantine = quarantine.cache()

    mine = F.col("_batch") == batch
    summary.accepted = accepted.where(mine).count()
    summary.duplicates = dups.where(mine).count()
    by_reason = quarantine.where(mine).groupBy("reason").count().collect()
    summary.by_reason = {r["reason"]: r["count"] for r in sorted(by_reason)}
    summary.quarantined = sum(summary.by_reason.values())

    lake.overwrite_partitions(QUARANTINE_EVENTS.name, quarantine.toArrow(), [ds])
    dates = [r[0] for r in accepted.select("event_date").distinct().collect()]
    if dates:
        existing = lake.read_spark(spark, SILVER_INTERACTIONS.name, dates)
        merged = existing.unionByName(accepted.select(*SILVER_INTERACTIONS.schema.names))
        lake.write_spark(SILVER_INTERACTIONS.name, merged, dates)
    for table in (BRONZE_EVENTS, SILVER_INTERACTIONS, QUARANTINE_EVENTS):
        summary.versions[table.name] = lake.version(table.name)
    day.unpersist()
    return summary


def format_summary(s: IngestSummary) -> str:
    lines = [f"ingest ds={s.ds} batch={s.batch}",
             f"  source rows  {s.source_rows:>10,}",
             f"  accepted     {s.accepted:>10,}",
             f"  duplicates   {s.duplicates:>10,}",
             f"  quarantined  {s.quarantined:>10,}"]
    lines += [f"    {reason:<22} {n:>8,}" for reason, n in s.by_reason.items()]
    if not s.bronze_appended:
        lines.append("  (this batch was already in bronze/events; nothing appended)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--source", help="events file or folder (csv/jsonl/parquet); default: "
                                         "<landing>/events.parquet")
    add_landing_arg(parser)
    parser.add_argument("--ds", required=True, type=parse_ds, help="ingest date YYYY-MM-DD")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    source = args.source or str(landing_dir(settings, args.landing) / "events.parquet")
    list_source_files(source)  # a missing or unreadable source stops before Spark starts
    from jobs.spark import get_spark

    summary = ingest_source(get_spark(settings), settings, args.ds, source)
    print(format_summary(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(summary), indent=2, sort_keys=True))
    return 0
