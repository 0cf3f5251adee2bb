"""What a release holds, as in-memory tables, before
:func:`~serving_export.release.writer.write_release` lays it out on disk
(:mod:`serving_export.release.format`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from serving_export.release import arrays as rb


@dataclass(frozen=True)
class Embeddings:
    """Vectors with their ids.

    Attributes:
        ids: N ids (strings, or values whose ``str`` is the id).
        vectors: (N, D) float32, finite.
    """

    ids: Sequence[Any] | np.ndarray
    vectors: np.ndarray

    @classmethod
    def from_table(cls, table: Any, id_col: str = "id", vector_col: str = "vector") -> Embeddings:
        """Build from a gold embeddings table (``id``, ``vector`` list<float32>)."""
        table = rb.as_table(table, "embeddings")
        rb.require_columns(table, [id_col, vector_col], "embeddings")
        column = table.column(vector_col).combine_chunks()
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32)
        n = table.num_rows
        dim = len(flat) // n if n else 0
        if dim * n != len(flat):
            raise ValueError("embeddings: vectors of unequal length")
        return cls(ids=table.column(id_col).to_pylist(), vectors=flat.reshape(n, dim))


@dataclass(frozen=True)
class GateVerdict:
    """The promotion gate's decision about a release."""

    passed: bool
    reasons: tuple[str, ...] = ()


@dataclass
class ReleaseData:
    """Everything one release holds, as in-memory tables (Arrow, pandas or dict columns).

    Attributes:
        ds: logical date ``YYYY-MM-DD`` the release was built for.
        gate: the gate's verdict; only a passed release can be published.
        topn: surface -> (``user_id``, ``item_id``, ``score``[, ``rank``][, ``sources``]),
            ``sources`` a list of strategy names (or one name) per row.
        similar_items: (``item_id``, ``similar_item_id``, ``score``[, ``rank``]).
        popularity: (``segment``, ``item_id``, ``score``[, ``rank``]); a null or empty
            segment (or ``__overall__``) is the overall list, which a full release needs.
        items: (``item_id``[, ``title``][, ``categories`` list][, ``available``][, ``boost``
            >= 0, 1 = neutral]). Items only named by other tables are available, boost 1.
        users: (``user_id``[, ``segment``][, ``purchased`` list of item ids]).
        user_embeddings, item_embeddings: vectors for re-ranking (same D).
        faiss_dir: a sharded FAISS index directory whose ids are rows of
            ``item_embeddings``; copied into ``faiss/`` with ids turned into item rows.
        model_versions, table_versions, metrics, extra: recorded in the manifest.
    """

    ds: str
    gate: GateVerdict
    topn: Mapping[str, Any] | None = None
    similar_items: Any | None = None
    popularity: Any | None = None
    items: Any | None = None
    users: Any | None = None
    user_embeddings: Embeddings | None = None
    item_embeddings: Embeddings | None = None
    faiss_dir: str | Path | None = None
    model_versions: Mapping[str, str] = field(default_factory=dict)
    table_versions: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
