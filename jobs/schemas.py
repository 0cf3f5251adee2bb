"""Table contracts: every lake table's Arrow schema and partition columns, declared once.

Names follow DESIGN.md section 3. Partition columns are strings (``YYYY-MM-DD``) so every
engine reads them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
RAW_EVENT_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "value", "ts", "surface")


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name (path under ``lake_root``), schema and partition columns."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()


def _raw_fields() -> list[pa.Field]:
    return [pa.field(c, pa.string()) for c in RAW_EVENT_COLUMNS]


_LINEAGE = [pa.field("raw_record", pa.string()), pa.field("_source", pa.string()),
            pa.field("_row", pa.int64()), pa.field("_batch", pa.string())]
"""``raw_record`` holds the text of a row the reader could not split into fields."""

BRONZE_EVENTS = TableSpec(
    "bronze/events",
    pa.schema([*_raw_fields(), *_LINEAGE, pa.field("ingest_date", pa.string(), False)]),
    ("ingest_date",),
)
QUARANTINE_EVENTS = TableSpec(
    "quarantine/events",
    pa.schema([*_raw_fields(), pa.field("reason", pa.string(), False), *_LINEAGE,
               pa.field("ingest_date", pa.string(), False)]),
    ("ingest_date",),
)
SILVER_INTERACTIONS = TableSpec(
    "silver/interactions",
    pa.schema([
        pa.field("event_id", pa.string(), False),
        pa.field("user_id", pa.string(), False),
        pa.field("item_id", pa.string(), False),
        pa.field("event_type", pa.string(), False),
        pa.field("value", pa.float64()),
        pa.field("ts", TS, False),
        pa.field("surface", pa.string()),
        pa.field("content_hash", pa.string(), False),
        pa.field("event_date", pa.string(), False),
    ]),
    ("event_date",),
)
SILVER_ITEMS = TableSpec(
    "silver/items",
    pa.schema([
        pa.field("item_id", pa.string(), False),
        pa.field("title", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
        pa.field("available", pa.bool_(), False),
        pa.field("created_at", TS),
        pa.field("boost", pa.float64(), False),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",),
)
SILVER_USERS = TableSpec(
    "silver/users",
    pa.schema([
        pa.field("user_id", pa.string(), False),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
        pa.field("created_at", TS),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",),
)
QUARANTINE_CATALOG = TableSpec(
    "quarantine/catalog",
    pa.schema([
        pa.field("kind", pa.string(), False),
        pa.field("id", pa.string()),
        pa.field("record", pa.string()),
        pa.field("reason", pa.string(), False),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",),
)
TRAINING_MATRIX = TableSpec(
    "gold/training_matrix",
    pa.schema([
        pa.field("user_id", pa.string(), False),
        pa.field("item_id", pa.string(), False),
        pa.field("confidence", pa.float64(), False),
        pa.field("n_events", pa.int64(), False),
        pa.field("last_ts", TS, False),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (BRONZE_EVENTS, QUARANTINE_EVENTS, SILVER_INTERACTIONS, SILVER_ITEMS,
                 SILVER_USERS, QUARANTINE_CATALOG, TRAINING_MATRIX)
}


def register(spec: TableSpec) -> TableSpec:
    """Add a table contract declared in another module (gold tables of later stages)."""
    existing = TABLES.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"table {spec.name!r} is already declared with another schema")
    TABLES[spec.name] = spec
    return spec


DECLARING_MODULES = (
    "jobs.embeddings", "jobs.content", "jobs.popularity", "jobs.covisitation",
    "jobs.candidates", "jobs.topn", "jobs.hourly", "training.examples", "evaluation.offline",
)
"""Modules that declare the later stages' tables next to the code that writes them."""


def all_tables() -> dict[str, TableSpec]:
    """Every declared table, importing the modules that declare them."""
    import importlib

    for module in DECLARING_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return TABLES


def spec_for(name: str) -> TableSpec:
    """The contract of table ``name``; ``KeyError`` names unknown tables."""
    if name not in TABLES:
        all_tables()
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}") from None
