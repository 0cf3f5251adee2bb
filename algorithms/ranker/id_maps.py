"""Id maps: external ids (int or string) to embedding buckets, bucket 0 reserved.

A map keeps the most frequent training ids, at most ``cap - 1`` of them and only those seen
``min_count`` times or more; the id at position ``i`` (most frequent first) gets bucket
``i + 1``. Every other id, unseen, rare or null, gets bucket 0, the cold bucket.

Maps are stored as Arrow IPC files (columns ``key``, ``count``), never pickled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from conf.errors import ArtifactError, SchemaError

log = logging.getLogger(__name__)

_COMPACT_EVERY = 32


def normalise_ids(values: pa.Array | pa.ChunkedArray, name: str) -> pa.Array:
    """Return ``values`` as int64 or string (dictionaries decoded, chunks combined).

    Raises:
        SchemaError: the type is neither integer nor string-like.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_integer(values.type):
        return values.cast(pa.int64())
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values.cast(pa.string())
    raise SchemaError(f"column {name!r} must hold integer or string ids, got {values.type}")


class IdCounter:
    """Counts ids over a stream of Arrow arrays (memory: one row per distinct id)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._parts: list[pa.Table] = []

    def update(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Count the non-null ids in ``values`` (a flat array; flatten lists first)."""
        values = normalise_ids(values, self.name).drop_null()
        if len(values) == 0:
            return
        if self._parts and self._parts[0].schema.field("key").type != values.type:
            raise SchemaError(
                f"column {self.name!r} changed id type from "
                f"{self._parts[0].schema.field('key').type} to {values.type}"
            )
        counts = pc.value_counts(values)
        self._parts.append(
            pa.table({"key": counts.field("values"), "count": counts.field("counts")})
        )
        if len(self._parts) >= _COMPACT_EVERY:
            self._parts = [self._counts()]

    def _counts(self) -> pa.Table:
        table = pa.concat_tables(self._parts)
        out = table.group_by("key").aggregate([("count", "sum")])
        return out.rename_columns(["key", "count"]).cast(
            pa.schema([("key", table.schema.field("key").type), ("count", pa.int64())])
        )

    def to_id_map(self, cap: int, min_count: int) -> IdMap:
        """Keep the ``cap - 1`` most frequent ids seen ``min_count`` times or more.

        Ties are broken by the id itself, so the map does not depend on the stream order.
        """
        if cap < 2:
            raise ValueError(f"id map cap must be >= 2 (bucket 0 is reserved), got {cap}")
        if not self._parts:
            return IdMap(self.name, pa.array([], pa.int64()), np.zeros(0, np.int64))
        counts = self._counts()
        counts = counts.filter(pc.greater_equal(counts["count"], min_count))
        counts = counts.sort_by([("count", "descending"), ("key", "ascending")])
        counts = counts.slice(0, cap - 1)
        return IdMap(
            self.name,
            counts["key"].combine_chunks(),
            counts["count"].to_numpy().astype(np.int64),
        )


@dataclass
class IdMap:
    """External id -> bucket for one sparse feature.

    Attributes:
        name: the feature name.
        keys: the kept ids, most frequent first; ``keys[i]`` has bucket ``i + 1``.
        counts: training count of each kept id, int64 (len(keys),).
    """

    name: str
    keys: pa.Array
    counts: np.ndarray
    _index: pd.Index | None = field(default=None, repr=False, compare=False)

    @property
    def num_buckets(self) -> int:
        """Embedding rows this map needs: the kept ids plus bucket 0."""
        return len(self.keys) + 1

    def lookup(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Map ids to buckets.

        Args:
            values: N ids (int or string; nulls allowed).

        Returns:
            int64 (N,) buckets in ``[0, num_buckets)``; 0 for unseen and null ids.
        """
        values = normalise_ids(values, self.name)
        if len(self.keys) and values.type != self.keys.type:
            try:
                values = values.cast(self.keys.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"column {self.name!r} holds {values.type} ids, the map {self.keys.type}"
                ) from exc
        if len(values) == 0 or len(self.keys) == 0:
            return np.zeros(len(values), np.int64)
        if self._index is None:
            self._index = pd.Index(self.keys.to_numpy(zero_copy_only=False))
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            filler = 0 if pa.types.is_integer(values.type) else ""
            values = pc.fill_null(values, filler)
        buckets = self._index.get_indexer(values.to_numpy(zero_copy_only=False)) + 1
        buckets = buckets.astype(np.int64)
        buckets[nulls] = 0
        return buckets

    def save(self, path: Path) -> None:
        """Write the map as an Arrow IPC file."""
        table = pa.table({"key": self.keys, "count": pa.array(self.counts, pa.int64())})
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    @classmethod
    def load(cls, path: Path, name: str) -> IdMap:
        """Read a map written by :meth:`save`.

        Raises:
            ArtifactError: the file is missing or lacks the ``key``/``count`` columns.
        """
        try:
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise ArtifactError(f"cannot read id map {path}: {exc}") from exc
        if table.column_names != ["key", "count"]:
            raise ArtifactError(f"id map {path} has columns {table.column_names}")
        return cls(name, table["key"].combine_chunks(), table["count"].to_numpy())
