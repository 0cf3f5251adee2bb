"""The lake's table catalog: every table's name, schema, partition columns and writer, once.

Names follow DESIGN.md section 3 (``<layer>/<table>`` under ``lake_root``). Partition
columns are strings (``YYYY-MM-DD``) so every engine reads them the same way. ``writers``
names the pipeline tasks (``recpipe/stages.py``) that write the table; no other code does.
:mod:`jobs.lake` checks every write against the contract here, and every stage imports the
specs it reads and writes from here.

Not to be confused with :mod:`jobs.catalog`, the job that loads the item and user
catalogue (``silver/items``, ``silver/users``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from algorithms.ranker.features import (
    EXAMPLE_DENSE_COLUMNS,
    LABEL_COLUMN,
    WEIGHT_COLUMN,
)
from conf.recs import STRATEGIES

TS = pa.timestamp("us", tz="UTC")
RAW_EVENT_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "value", "ts", "surface")


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name (path under ``lake_root``), schema, partition columns and the
    pipeline tasks that write it."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()
    writers: tuple[str, ...] = ()


def _raw_fields() -> list[pa.Field]:
    return [pa.field(c, pa.string()) for c in RAW_EVENT_COLUMNS]


_LINEAGE = [pa.field("raw_record", pa.string()), pa.field("_source", pa.string()),
            pa.field("_row", pa.int64()), pa.field("_batch", pa.string())]
"""``raw_record`` holds the text of a row the reader could not split into fields."""


def _vectors_schema() -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string(), False),
        pa.field("vector", pa.list_(pa.float32()), False),
        pa.field("model_version", pa.string(), False),
        pa.field("ds", pa.string(), False),
    ])


# -- columns shared by several tables -------------------------------------------------------
CANDIDATE_FIELDS = [
    pa.field("user_id", pa.string(), False),
    pa.field("item_id", pa.string(), False),
    pa.field("score", pa.float64(), False),
    *[pa.field(f"{name}_score", pa.float64()) for name in STRATEGIES],
    pa.field("sources", pa.list_(pa.string())),
    pa.field("rank", pa.int32(), False),
]
"""A candidate row: merged score, each strategy's own score, the strategies that found it."""

TOPN_FIELDS = [
    pa.field("user_id", pa.string(), False),
    pa.field("rank", pa.int32(), False),
    pa.field("item_id", pa.string(), False),
    pa.field("score", pa.float64(), False),
    pa.field("sources", pa.list_(pa.string())),
]
"""A precomputed list row of one surface."""


# -- bronze, silver, quarantine -------------------------------------------------------------
BRONZE_EVENTS = TableSpec(
    "bronze/events",
    pa.schema([*_raw_fields(), *_LINEAGE, pa.field("ingest_date", pa.string(), False)]),
    ("ingest_date",), ("ingest_events", "ingest_spool"),
)
QUARANTINE_EVENTS = TableSpec(
    "quarantine/events",
    pa.schema([*_raw_fields(), pa.field("reason", pa.string(), False), *_LINEAGE,
               pa.field("ingest_date", pa.string(), False)]),
    ("ingest_date",), ("ingest_events", "ingest_spool"),
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
    ("event_date",), ("ingest_events", "ingest_spool"),
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
    ("ds",), ("load_catalog",),
)
SILVER_USERS = TableSpec(
    "silver/users",
    pa.schema([
        pa.field("user_id", pa.string(), False),
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
        pa.field("created_at", TS),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("load_catalog",),
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
    ("ds",), ("load_catalog",),
)

# -- gold: the nightly's stages -------------------------------------------------------------
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
    ("ds",), ("training_matrix",),
)
USER_EMBEDDINGS = TableSpec("gold/user_embeddings", _vectors_schema(), ("ds",), ("embeddings",))
ITEM_EMBEDDINGS = TableSpec("gold/item_embeddings", _vectors_schema(), ("ds",), ("embeddings",))
ITEM_CONTENT = TableSpec(
    "gold/item_content",
    pa.schema([
        pa.field("id", pa.string(), False),
        pa.field("vector", pa.list_(pa.float32()), False),  # D: predicted ALS-space vector
        pa.field("content_vector", pa.list_(pa.float32())),  # F: unit-norm content features
        pa.field("has_cf", pa.bool_(), False),               # the item had an ALS vector
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("content",),
)
POPULARITY = TableSpec(
    "gold/popularity",
    pa.schema([
        pa.field("segment", pa.string(), False),   # "all" or e.g. "age=25-34|gender=F"
        pa.field("item_id", pa.string(), False),
        pa.field("score", pa.float64(), False),    # decayed weight / segment's top; top = 1.0
        pa.field("rank", pa.int32(), False),       # 1 = most popular in the segment
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("popularity",),
)
COVISITATION = TableSpec(
    "gold/covisitation",
    pa.schema([
        pa.field("item_id", pa.string(), False),
        pa.field("neighbor_id", pa.string(), False),
        pa.field("score", pa.float64(), False),   # cosine or conditional (see settings)
        pa.field("co_count", pa.int64(), False),  # sessions holding both within the window
        pa.field("rank", pa.int32(), False),      # 1 = best neighbour of item_id
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("covisitation",),
)
ITEM_CONTEXT = TableSpec(
    "gold/item_context",
    pa.schema([
        pa.field("item_id", pa.string(), False),
        pa.field("vector", pa.list_(pa.float32()), False),   # D: ALS, else content-mapped
        pa.field("has_cf", pa.bool_(), False),                # an ALS vector
        pa.field("has_vector", pa.bool_(), False),            # any vector
        pa.field("content", pa.list_(pa.float32()), False),  # C: unit content features
        pa.field("covis_rows", pa.list_(pa.int32()), False),    # co-visitation neighbours
        pa.field("covis_scores", pa.list_(pa.float32()), False),
        pa.field("graph_rows", pa.list_(pa.int32()), False),    # + embedding neighbours
        pa.field("graph_scores", pa.list_(pa.float32()), False),
        pa.field("in_catalogue", pa.bool_(), False),
        pa.field("available", pa.bool_(), False),
        pa.field("boost", pa.float64(), False),
        pa.field("category", pa.string()),                   # first category (diversity)
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("item_context",),
)
"""The item side of a date, built once (:mod:`jobs.item_context`); rows sorted by id."""
CANDIDATES = TableSpec(
    "gold/candidates",
    pa.schema([*CANDIDATE_FIELDS, pa.field("ds", pa.string(), False)]),
    ("ds",), ("candidates",),
)
EXAMPLES = TableSpec(
    "gold/ranker_examples",
    pa.schema([
        pa.field("user_id", pa.string(), False),
        pa.field("item_id", pa.string(), False),
        pa.field("origin", pa.string(), False),
        pa.field("item_categories", pa.list_(pa.string())),
        pa.field("user_age_bucket", pa.string()),
        pa.field("user_gender", pa.string()),
        pa.field("user_occupation", pa.string()),
        pa.field("retrieval_strategies", pa.list_(pa.string())),
        *[pa.field(name, pa.float64()) for name in EXAMPLE_DENSE_COLUMNS],
        pa.field(LABEL_COLUMN, pa.float64(), False),
        pa.field(WEIGHT_COLUMN, pa.float64(), False),
        pa.field("source_ds", pa.string(), False),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("ranker_examples",),
)
TOPN = TableSpec(
    "gold/topn",
    pa.schema([*TOPN_FIELDS, pa.field("surface", pa.string(), False),
               pa.field("ds", pa.string(), False)]),
    ("ds", "surface"), ("topn",),
)
SIMILAR_ITEMS = TableSpec(
    "gold/similar_items",
    pa.schema([pa.field("item_id", pa.string(), False), pa.field("rank", pa.int32(), False),
               pa.field("similar_item_id", pa.string(), False),
               pa.field("score", pa.float64(), False), pa.field("ds", pa.string(), False)]),
    ("ds",), ("topn",),
)
EVALUATION = TableSpec(
    "gold/evaluation",
    pa.schema([
        pa.field("model_version", pa.string(), False),  # the embeddings' model version
        pa.field("stage", pa.string(), False),          # model, merged, topn/home_feed, gate..
        pa.field("slice", pa.string(), False),          # all, cold_users, heavy_users, ...
        pa.field("metric", pa.string(), False),         # ndcg, recall, coverage, passed, ...
        pa.field("k", pa.int32()),                      # cutoff (null for the verdict)
        pa.field("value", pa.float64()),                # NaN when the slice has no user
        pa.field("users", pa.int64(), False),           # users behind the value
        pa.field("run_id", pa.string()),                # MLflow evaluation run
        pa.field("details", pa.string()),               # JSON (the gate's verdict)
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("evaluate", "gate"),
)

# -- ops ------------------------------------------------------------------------------------
HOURLY_FILES = TableSpec(
    "ops/hourly_files",
    pa.schema([
        pa.field("file", pa.string(), False),
        pa.field("bytes", pa.int64(), False),
        pa.field("batch", pa.string(), False),
        pa.field("hour", pa.int32(), False),
        pa.field("ds", pa.string(), False),
    ]),
    ("ds",), ("ingest_spool",),
)

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    BRONZE_EVENTS, QUARANTINE_EVENTS, SILVER_INTERACTIONS, SILVER_ITEMS, SILVER_USERS,
    QUARANTINE_CATALOG, TRAINING_MATRIX, USER_EMBEDDINGS, ITEM_EMBEDDINGS, ITEM_CONTENT,
    POPULARITY, COVISITATION, ITEM_CONTEXT, CANDIDATES, EXAMPLES, TOPN, SIMILAR_ITEMS, EVALUATION,
    HOURLY_FILES,
)}
"""Every lake table by name."""


def spec_for(name: str) -> TableSpec:
    """The contract of table ``name``.

    Raises:
        KeyError: an unknown table (the message lists the known ones).
    """
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}") from None
