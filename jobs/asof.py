"""Snapshot tables read "as of" a date: the partition ``ds`` itself, else the latest before it.

Catalogue snapshots (``silver/items``, ``silver/users``) and model outputs are not written
every day; a job for date D reads the newest partition at or before D, never one after it, so
a backfill of an old date sees only what existed then.
"""

from __future__ import annotations

import logging

from jobs.lake import Lake

log = logging.getLogger(__name__)


def latest_partition_at_or_before(lake: Lake, table: str, ds: str) -> str | None:
    """The partition value of ``table`` equal to ``ds``, else the greatest one below it.

    Works for any partitioned Delta table in the lake: the partition column is taken from
    the table's own metadata.

    Args:
        lake: the lake holding ``table``.
        table: a table name under ``lake_root`` (e.g. ``silver/items``).
        ds: the logical date ``YYYY-MM-DD``; partitions are compared as ISO date strings.

    Returns:
        The chosen partition value, or ``None`` when the table is missing or every partition
        is later than ``ds``.

    Raises:
        ValueError: ``table`` exists but is not partitioned.
    """
    if not lake.exists(table):
        return None
    delta = lake.table(table)
    columns = delta.metadata().partition_columns
    if not columns:
        raise ValueError(f"table {table!r} is not partitioned; it has no as-of partitions")
    values = sorted({p[columns[0]] for p in delta.partitions()} - {None})
    candidates = [v for v in values if v <= ds]
    if not candidates:
        return None
    chosen = candidates[-1]
    if chosen != ds:
        log.info("%s has no partition %s; using the latest before it, %s", table, ds, chosen)
    return chosen
