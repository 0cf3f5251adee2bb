"""``recpipe summary``: every table in the lake with rows, partitions and Delta version."""

from __future__ import annotations

import argparse
import json

from conf import Settings
from jobs.cli_common import add_common_args, settings_from_args
from jobs.lake import Lake
from jobs.tables import TABLES


def table_summary(settings: Settings) -> list[dict]:
    """One entry per existing table: ``table, rows, partitions, version``."""
    lake = Lake(settings)
    out = []
    for name in sorted(TABLES):
        if not lake.exists(name):
            continue
        dt = lake.table(name)
        rows = sum(int(n) for n in dt.get_add_actions(flatten=True)
                   .column("num_records").to_pylist() if n is not None)
        out.append({"table": name, "rows": rows, "partitions": len(lake.partitions(name)),
                    "version": dt.version()})
    return out


def format_table(rows: list[dict]) -> str:
    lines = [f"{'table':<28} {'rows':>12} {'partitions':>11} {'version':>8}"]
    lines += [f"{r['table']:<28} {r['rows']:>12,} {r['partitions']:>11} {r['version']:>8}"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe summary", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_common_args(parser)
    args = parser.parse_args(argv)
    rows = table_summary(settings_from_args(args))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
