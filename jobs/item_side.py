"""The item side of a date as the stages read it: ``gold/item_context`` (built once by
:mod:`jobs.item_context`) and the segments' popular lists of ``gold/popularity``.

Shapes: N items (rows of the context, sorted by id), D vector size, C content size.

:func:`read_item_context` gives an :class:`ItemContext`; each stage takes the view it needs:
:meth:`ItemContext.retrieval` for candidates, similar items and the hourly run,
:meth:`ItemContext.feature_side` for the ranker's features, :meth:`ItemContext.meta` for
the business rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from algorithms.segments import ALL
from conf import Settings
from conf.errors import EmptyInput
from jobs.lake import Lake
from jobs.retrieval import RetrievalContext
from jobs.rules import ItemMeta
from jobs.tables import ITEM_CONTEXT, POPULARITY


@dataclass
class ItemSide:
    """Item-side arrays broadcast to the feature pass.

    Attributes:
        item_ids: (N,) item ids; row ``i`` of the matrices is item ``i``.
        als: float32 (N, D) ALS item vectors (content-mapped vectors for items without
            one; zero rows with ``has_als`` False when neither exists).
        has_als: bool (N,).
        content: float32 (N, C) L2-normalised content vectors (zero rows when missing).
        covis: (N, N) CSR co-visitation scores (row: item, columns: its neighbours).
    """

    item_ids: np.ndarray
    als: np.ndarray
    has_als: np.ndarray
    content: np.ndarray
    covis: sp.csr_matrix
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name, arr in (("als", self.als), ("has_als", self.has_als),
                          ("content", self.content)):
            if arr.shape[0] != n:
                raise ValueError(f"ItemSide.{name} has {arr.shape[0]} rows for {n} items")
        if self.covis.shape != (n, n):
            raise ValueError(f"ItemSide.covis has shape {self.covis.shape}, want ({n}, {n})")
        self.row_of = {str(item): i for i, item in enumerate(self.item_ids)}

    def rows(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(B,) int64 rows of an Arrow string column of item ids; -1 for unknown or null
        ids."""
        found = pc.index_in(ids, value_set=pa.array(self.item_ids.tolist(), pa.string()))
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def list_matrix_f32(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``list<float>`` column whose rows all have one length as float32 (N, D); (0, 0)
    when empty."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(values) == 0 or values.null_count == len(values):
        return np.zeros((len(values), 0), np.float32)
    flat = pc.list_flatten(values).to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(values), -1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def csr_from_lists(rows: pa.ChunkedArray, scores: pa.ChunkedArray, n: int) -> sp.csr_matrix:
    """The (N, N) matrix written as a row's column numbers and values (see
    :func:`jobs.item_context.build`)."""
    rows, scores = rows.combine_chunks(), scores.combine_chunks()
    indptr = rows.offsets.to_numpy()
    indptr = indptr - indptr[0]
    return sp.csr_matrix((pc.list_flatten(scores).to_numpy().astype(np.float32),
                          pc.list_flatten(rows).to_numpy().astype(np.int32), indptr),
                         shape=(n, n))


def popular_lists(pop: pa.Table, row_of: dict[str, int], segment_weight: float = 1.0
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """segment -> (item rows, scores) best first, from ``gold/popularity`` rows.

    A segment's list scores each item ``segment_weight * segment score + (1 -
    segment_weight) * overall score`` (both normalised to 1 at the top), so small segments
    lean on the overall list instead of their own noise.
    """
    scores: dict[str, dict[int, float]] = {}
    for r in pop.to_pylist():
        if r["item_id"] in row_of:
            scores.setdefault(r["segment"], {})[row_of[r["item_id"]]] = float(r["score"])
    overall = scores.get(ALL, {})
    lists = {}
    for segment, own in scores.items():
        if segment == ALL:
            blended = own
        else:
            blended = {i: segment_weight * own.get(i, 0.0)
                       + (1 - segment_weight) * overall.get(i, 0.0)
                       for i in set(own) | set(overall)}
        order = sorted(blended, key=lambda i: (-blended[i], i))
        lists[segment] = (np.array(order, np.int64),
                          np.array([blended[i] for i in order], np.float32))
    lists.setdefault(ALL, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
    return lists


@dataclass
class ItemContext:
    """The item side of one date.

    Attributes:
        item_ids: (N,) object, sorted; row ``i`` of every array is item ``i``.
        vectors: float32 (N, D) retrieval vectors (ALS, else content-mapped, else zeros).
        has_cf, has_vector: bool (N,): an ALS vector; any vector.
        content: float32 (N, C) unit content vectors.
        covis: (N, N) CSR co-visitation scores.
        graph: (N, N) CSR co-visitation plus embedding neighbours.
        table: the context rows (for the rules' item attributes).
        popular: segment -> (rows, scores) best first; holds ``"all"``.
    """

    item_ids: np.ndarray
    vectors: np.ndarray
    has_cf: np.ndarray
    has_vector: np.ndarray
    content: np.ndarray
    covis: sp.csr_matrix
    graph: sp.csr_matrix
    table: pa.Table
    popular: dict[str, tuple[np.ndarray, np.ndarray]]

    def retrieval(self) -> RetrievalContext:
        """What candidate retrieval, similar items and the hourly run search."""
        return RetrievalContext(item_ids=self.item_ids, item_vectors=self.vectors,
                                content=self.content, neighbours=self.graph,
                                popular=self.popular)

    def feature_side(self) -> ItemSide:
        """What the ranker's feature pass combines with a user's history."""
        return ItemSide(self.item_ids, self.vectors, self.has_vector, self.content, self.covis)

    def meta(self) -> ItemMeta:
        """Availability, boost and first category of the catalogue's items."""
        rows = self.table.filter(self.table.column("in_catalogue")).sort_by("item_id")
        category = pc.dictionary_encode(rows.column("category").combine_chunks())
        return ItemMeta(
            item_ids=rows.column("item_id").combine_chunks(),
            available=rows.column("available").to_numpy().astype(bool),
            boost=rows.column("boost").to_numpy().astype(np.float64),
            category=pc.fill_null(category.indices, -1).to_numpy(
                zero_copy_only=False).astype(np.int64),
        )


def read_item_context(lake: Lake, ds: str, settings: Settings) -> ItemContext:
    """The item side of ``ds`` (``gold/item_context`` and ``gold/popularity`` of ``ds``).

    Raises:
        EmptyInput: ``gold/item_context`` has no rows for ``ds`` (run ``recpipe
            item-context --ds <ds>``).
    """
    table = lake.read_arrow(ITEM_CONTEXT.name, [ds]).sort_by("item_id")
    if table.num_rows == 0:
        raise EmptyInput(f"{ITEM_CONTEXT.name} has no rows for ds={ds}; run "
                         f"`recpipe item-context --ds {ds}`")
    n = table.num_rows
    item_ids = np.asarray(table.column("item_id").to_pylist(), dtype=object)
    row_of = {item: i for i, item in enumerate(item_ids)}
    popular = popular_lists(lake.read_arrow(POPULARITY.name, [ds]), row_of,
                            settings.candidates.segment_weight)
    return ItemContext(
        item_ids=item_ids,
        vectors=list_matrix_f32(table.column("vector")),
        has_cf=table.column("has_cf").to_numpy(zero_copy_only=False),
        has_vector=table.column("has_vector").to_numpy(zero_copy_only=False),
        content=list_matrix_f32(table.column("content")),
        covis=csr_from_lists(table.column("covis_rows"), table.column("covis_scores"), n),
        graph=csr_from_lists(table.column("graph_rows"), table.column("graph_scores"), n),
        table=table.select(["item_id", "in_catalogue", "available", "boost", "category"]),
        popular=popular,
    )
