"""``recpipe load-catalog``: item and user files -> ``silver/items``, ``silver/users``.

Each load writes a snapshot of the catalogue as of ``ds`` (partition ``ds=``), replacing
that date's snapshot. Rows without an id, repeated ids and invalid values go to
``quarantine/catalog`` with a reason. Catalogues are small next to events (millions of rows
at most), so this job runs on Arrow without Spark.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conf import Settings
from conf.errors import SourceError
from jobs.cli_common import (
    add_common_args,
    add_landing_arg,
    landing_dir,
    parse_ds,
    settings_from_args,
)
from jobs.lake import Lake
from jobs.tables import QUARANTINE_CATALOG, SILVER_ITEMS, SILVER_USERS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _read(path: Path, kind: str) -> pa.Table:
    if not path.is_file():
        raise SourceError(f"{kind} file not found: {path}")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"cannot read {kind} file {path} as Parquet: {exc}") from exc


def check_catalog(table: pa.Table, id_col: str) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Split catalogue rows into (valid rows, [(id, reason)] for the rejected ones).

    Reasons: ``missing_<id_col>`` (null or blank), ``duplicate_<id_col>`` (every repeat
    after the first), ``bad_boost`` (null-safe: negative or non-finite boost, items only).
    """
    if id_col not in table.column_names:
        raise SourceError(f"catalogue lacks its id column {id_col!r}")
    ids = table.column(id_col).cast(pa.string()).to_pylist()
    reasons: list[str | None] = [None] * len(ids)
    seen: set[str] = set()
    boost = table.column("boost").to_numpy(zero_copy_only=False) \
        if "boost" in table.column_names else None
    for i, value in enumerate(ids):
        if value is None or not value.strip():
            reasons[i] = f"missing_{id_col}"
        elif value in seen:
            reasons[i] = f"duplicate_{id_col}"
        elif boost is not None and not np.isnan(boost[i]) and (boost[i] < 0
                                                                 or not np.isfinite(boost[i])):
            reasons[i] = "bad_boost"
        else:
            seen.add(value)
    keep = pa.array([r is None for r in reasons])
    rejected = [(ids[i], r) for i, r in enumerate(reasons) if r is not None]
    return table.filter(keep), rejected


def _rejects(table: pa.Table, valid_mask: list[tuple[str, str]], kind: str, ds: str
             ) -> pa.Table:
    rows = table.to_pylist()
    by_id = {}
    for row in rows:
        by_id.setdefault(row.get(f"{kind}_id"), row)
    return pa.table({
        "kind": [kind] * len(valid_mask),
        "id": [i for i, _ in valid_mask],
        "record": [json.dumps(by_id.get(i), default=str) for i, _ in valid_mask],
        "reason": [r for _, r in valid_mask],
        "ds": [ds] * len(valid_mask),
    })


def items_to_silver(items: pa.Table, ds: str) -> pa.Table:
    """Fill defaults (available true, boost 1.0, empty categories) and add ``ds``."""
    n = items.num_rows
    cols = {c: items.column(c) for c in items.column_names}
    available = cols.get("available", pa.nulls(n, pa.bool_()))
    boost = cols.get("boost", pa.nulls(n, pa.float64()))
    out = {
        "item_id": pc.utf8_trim_whitespace(cols["item_id"].cast(pa.string())),
        "title": cols.get("title", pa.nulls(n, pa.string())),
        "categories": cols.get("categories", pa.nulls(n, pa.list_(pa.string()))),
        "attributes": cols.get("attributes", pa.nulls(n, SILVER_ITEMS.schema.field(
            "attributes").type)),
        "available": pc.fill_null(available, True),
        "created_at": cols.get("created_at", pa.nulls(n, SILVER_ITEMS.schema.field(
            "created_at").type)),
        "boost": pc.fill_null(boost.cast(pa.float64()), 1.0),
        "ds": pa.array([ds] * n, pa.string()),
    }
    return pa.table(out)


def users_to_silver(users: pa.Table, ds: str) -> pa.Table:
    n = users.num_rows
    cols = {c: users.column(c) for c in users.column_names}
    return pa.table({
        "user_id": pc.utf8_trim_whitespace(cols["user_id"].cast(pa.string())),
        "attributes": cols.get("attributes", pa.nulls(n, SILVER_USERS.schema.field(
            "attributes").type)),
        "created_at": cols.get("created_at", pa.nulls(n, SILVER_USERS.schema.field(
            "created_at").type)),
        "ds": pa.array([ds] * n, pa.string()),
    })


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict:
    """Load ``items.parquet`` and ``users.parquet`` of the landing folder for ``ds``."""
    folder = landing_dir(settings, None)
    return load(settings, ds, folder / "items.parquet", folder / "users.parquet")


def load(settings: Settings, ds: str, items_path: Path | None, users_path: Path | None
         ) -> dict:
    """Load the given catalogue files for ``ds``; returns counts per table."""
    lake = Lake(settings)
    report: dict = {"ds": ds}
    rejected = []
    loaded = []
    if items_path is not None:
        raw = _read(items_path, "items")
        valid, bad = check_catalog(raw, "item_id")
        loaded.append((SILVER_ITEMS.name, items_to_silver(valid, ds)))
        rejected.append(_rejects(raw, bad, "item", ds))
        report["items"] = {"accepted": valid.num_rows, "quarantined": len(bad)}
    if users_path is not None:
        raw = _read(users_path, "users")
        valid, bad = check_catalog(raw, "user_id")
        loaded.append((SILVER_USERS.name, users_to_silver(valid, ds)))
        rejected.append(_rejects(raw, bad, "user", ds))
        report["users"] = {"accepted": valid.num_rows, "quarantined": len(bad)}
    for name, table in loaded:
        report.setdefault("versions", {})[name] = lake.overwrite_partitions(name, table, [ds])
    if rejected:
        # the day's partition is rewritten whole: keep the rejects of the kinds not loaded
        # now (a users-only reload must not erase that day's item rejects)
        kinds = pa.array([k for k, path in (("item", items_path), ("user", users_path))
                          if path is not None])
        kept = lake.read_arrow(QUARANTINE_CATALOG.name, [ds])
        kept = kept.filter(pc.invert(pc.is_in(kept.column("kind"), value_set=kinds)))
        lake.overwrite_partitions(QUARANTINE_CATALOG.name,
                                  pa.concat_tables([kept, *rejected], promote_options="default"),
                                  [ds])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe load-catalog",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=Path, help="items Parquet file")
    parser.add_argument("--users", type=Path, help="users Parquet file")
    parser.add_argument("--from-landing", action="store_true",
                        help="read items.parquet and users.parquet of the landing folder")
    add_landing_arg(parser)
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    items, users = args.items, args.users
    if args.from_landing:
        folder = landing_dir(settings, args.landing)
        items, users = folder / "items.parquet", folder / "users.parquet"
    if items is None and users is None:
        parser.error("give --items and/or --users, or --from-landing")
    report = load(settings, args.ds, items, users)
    print(json.dumps(report, indent=2))
    return 0
