"""``recpipe check``: the data-quality gate after ingest.

Fails (exit 1) when the share of a day's raw events sent to quarantine exceeds
``ingest.max_quarantine_share``, or when the day has no raw events at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from conf import Settings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import BRONZE_EVENTS, QUARANTINE_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def quarantine_share(raw_rows: int, quarantined_rows: int) -> float:
    """Share of raw rows quarantined; raises ``ValueError`` when there are no raw rows."""
    if raw_rows <= 0:
        raise ValueError("no raw events for this date")
    return quarantined_rows / raw_rows


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict:
    """The share of ``ds``'s raw events that were quarantined, against the limit."""
    lake = Lake(settings)
    raw = lake.read_arrow(BRONZE_EVENTS.name, [ds], columns=["event_id"]).num_rows
    bad = lake.read_arrow(QUARANTINE_EVENTS.name, [ds], columns=["reason"])
    reasons = bad.column("reason").value_counts().to_pylist() if bad.num_rows else []
    report = {"ds": ds, "raw": raw, "quarantined": bad.num_rows,
              "by_reason": {r["values"]: r["counts"] for r in reasons},
              "max_share": settings.ingest.max_quarantine_share}
    report["share"] = quarantine_share(raw, bad.num_rows) if raw else None
    report["passed"] = bool(raw) and report["share"] <= settings.ingest.max_quarantine_share
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe check", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    report = run(None, settings_from_args(args), args.ds)
    print(json.dumps(report, indent=2))
    if not report["passed"]:
        why = ("no raw events" if not report["raw"] else
               f"{report['share']:.1%} of raw events quarantined "
               f"(limit {report['max_share']:.1%})")
        print(f"recpipe check: data-quality gate failed for {args.ds}: {why}", file=sys.stderr)
        return 1
    return 0
