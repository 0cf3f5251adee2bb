"""The three file formats the dataset tools produce, declared once and checked on write.

- :data:`RAW_EVENTS_SCHEMA`: one row per event, every column a nullable string (the ingest
  job types and validates them). ``ts`` is ISO-8601 UTC (``1997-09-20T03:05:10Z``).
- :data:`ITEMS_SCHEMA`: the item catalogue.
- :data:`USERS_SCHEMA`: user attributes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conf.errors import SchemaMismatch

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating", "skip")
"""Allowed values of ``event_type``."""

SURFACES: tuple[str, ...] = ("home_feed", "similar_items", "search", "email")
"""Surfaces the generators use (``surface`` may also be null)."""

RAW_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("event_type", pa.string()),
        pa.field("value", pa.string()),
        pa.field("ts", pa.string()),
        pa.field("surface", pa.string()),
    ]
)

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("attributes", STRING_MAP),
        pa.field("available", pa.bool_()),
        pa.field("created_at", UTC_TIMESTAMP),
        pa.field("boost", pa.float64()),
    ]
)

USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("attributes", STRING_MAP),
        pa.field("created_at", UTC_TIMESTAMP),
    ]
)


def check_schema(table: pa.Table | pa.RecordBatch, schema: pa.Schema, name: str) -> None:
    """Raise unless ``table`` has exactly ``schema``'s column names, order and types.

    Raises:
        SchemaMismatch: naming ``name`` and each differing column.
    """
    if table.schema.names != schema.names:
        raise SchemaMismatch(
            f"{name}: columns {table.schema.names} differ from the declared {schema.names}"
        )
    problems = [
        f"{f.name}: {t.type} (declared {f.type})"
        for f, t in zip(schema, table.schema, strict=True)
        if not t.type.equals(f.type)
    ]
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            problems.append(f"{field.name}: has nulls (declared not nullable)")
    if problems:
        raise SchemaMismatch(f"{name}: " + "; ".join(problems))


def write_parquet(table: pa.Table, path: Path, schema: pa.Schema) -> Path:
    """Check ``table`` against ``schema`` and write it to ``path`` atomically.

    The file is written beside ``path`` under a temporary name and renamed, so a crash never
    leaves a half-written file at ``path``.

    Returns:
        ``path``.

    Raises:
        SchemaMismatch: the table does not match ``schema``.
    """
    check_schema(table, schema, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table.cast(schema), tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    logger.info("wrote %d rows to %s", table.num_rows, path)
    return path


def iso_utc(epoch_s: np.ndarray) -> pa.Array:
    """Format epoch seconds as ISO-8601 UTC strings.

    Args:
        epoch_s: int64 seconds since 1970-01-01 UTC, shape (N,).

    Returns:
        Arrow strings of length N, e.g. ``1997-09-20T03:05:10Z``.
    """
    text = pa.array(np.asarray(epoch_s, dtype=np.int64), pa.timestamp("s")).cast(pa.string())
    text = pc.binary_replace_slice(text, start=10, stop=11, replacement="T")  # "YYYY-MM-DD hh"
    return pc.binary_join_element_wise(text, "Z", "")


def events_table(
    event_id: object,
    user_id: object,
    item_id: object,
    event_type: object,
    epoch_s: np.ndarray,
    value: np.ndarray | None = None,
    surface: object | None = None,
) -> pa.Table:
    """Assemble a raw events table from columns.

    Args:
        event_id: strings, shape (N,) (list, numpy or Arrow array).
        user_id: strings, shape (N,).
        item_id: strings, shape (N,).
        event_type: one string for all rows, or strings of shape (N,).
        epoch_s: event times in int64 epoch seconds, shape (N,); become ISO-8601 UTC ``ts``.
        value: float64 of shape (N,) with NaN for "no value", or None (all null). Written in
            the shortest form (``5``, ``3.5``).
        surface: strings of shape (N,) with None for "unknown", or None (all null).

    Returns:
        A table with :data:`RAW_EVENTS_SCHEMA`.
    """
    n = len(epoch_s)
    if isinstance(event_type, str):
        event_type = pa.array(np.full(n, event_type, dtype=object), pa.string())
    null = pa.nulls(n, pa.string())
    values = null if value is None else pa.array(value, from_pandas=True).cast(pa.string())
    columns = [
        pa.array(event_id, pa.string()) if not isinstance(event_id, pa.Array) else event_id,
        pa.array(user_id, pa.string()) if not isinstance(user_id, pa.Array) else user_id,
        pa.array(item_id, pa.string()) if not isinstance(item_id, pa.Array) else item_id,
        pa.array(event_type, pa.string()) if not isinstance(event_type, pa.Array) else event_type,
        values,
        iso_utc(epoch_s),
        null if surface is None else pa.array(surface, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=RAW_EVENTS_SCHEMA)


def write_parquet_stream(
    tables: Iterable[pa.Table], path: Path, schema: pa.Schema, row_group_rows: int | None = None
) -> int:
    """Write ``tables`` one after another into one Parquet file, without holding them all.

    Each table is checked against ``schema`` and written as (at least) one row group; the
    file appears at ``path`` only once complete (temporary name, then rename).

    Args:
        tables: the chunks, in order.
        path: the file to write.
        schema: the declared schema.
        row_group_rows: split chunks into row groups of at most this many rows (None: one row
            group per chunk).

    Returns:
        The number of rows written.

    Raises:
        SchemaMismatch: a chunk does not match ``schema`` (nothing is left at ``path``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk, table in enumerate(tables):
                check_schema(table, schema, f"{path} (chunk {chunk})")
                writer.write_table(table.cast(schema), row_group_size=row_group_rows)
                rows += table.num_rows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    logger.info("wrote %d rows to %s", rows, path)
    return rows
