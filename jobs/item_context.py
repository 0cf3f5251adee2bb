"""``recpipe item-context --ds D``: the item side of a date, built once ->
``gold/item_context/ds=``.

One row per item of the date's universe (the catalogue as of ``ds``, the items with an ALS
vector and the items with content), sorted by id, so an item's row number is the same in
every array built from it:

- ``vector``: the retrieval vector, the item's ALS vector, else (a cold item) its
  content-mapped vector; ``has_cf`` / ``has_vector`` say which;
- ``content``: the L2-normalised content features (the CF-space vector when the raw
  features are not stored);
- ``covis_rows`` / ``covis_scores``: the item's co-visitation neighbours (rows, scores);
- ``graph_rows`` / ``graph_scores``: co-visitation plus its ``EMBEDDING_NEIGHBOURS`` nearest
  ALS neighbours by cosine, the graph of session retrieval and similar items;
- ``in_catalogue``, ``available``, ``boost``, ``category``: what the business rules read.

With ``gold/popularity`` of the same date (the segments' popular lists) it is everything the
item side of candidates, top-N, similar items, the ranker's features and the hourly run
needs; they read it through :func:`read_item_context` instead of rebuilding it each.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from algorithms.projection import top_right_singular_vectors
from algorithms.topk import topk_inner_product
from conf import Settings
from conf.errors import EmptyInput
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.item_side import list_matrix_f32, unit_rows
from jobs.lake import Lake
from jobs.tables import (
    COVISITATION,
    ITEM_CONTENT,
    ITEM_CONTEXT,
    ITEM_EMBEDDINGS,
    SILVER_ITEMS,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

EMBEDDING_NEIGHBOURS = 20
"""Embedding neighbours per item added to the co-visitation graph for session retrieval."""


def item_graph(item_vectors: np.ndarray, has_cf: np.ndarray, covis: sp.csr_matrix,
               k: int = EMBEDDING_NEIGHBOURS) -> sp.csr_matrix:
    """Item-to-item graph: co-visitation scores plus the cosine of each CF item's ``k``
    nearest embedding neighbours (both in ``[0, 1]``-ish scales, summed)."""
    n = item_vectors.shape[0]
    rows = np.flatnonzero(has_cf)
    if len(rows) < 2:
        return covis
    unit = unit_rows(item_vectors[rows])
    self_loops = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), np.arange(len(rows)))),
                               shape=(len(rows), len(rows)))
    ids, sims = topk_inner_product(unit, unit, min(k, len(rows) - 1), exclude=self_loops)
    valid = (ids >= 0) & (sims > 0)
    r = np.repeat(rows, ids.shape[1])[valid.ravel()]
    c = rows[ids[valid]]
    emb = sp.csr_matrix((sims[valid].astype(np.float32), (r, c)), shape=(n, n))
    return (covis + emb).tocsr()


def _rows_of(ids: pa.ChunkedArray | pa.Array, universe: pa.Array) -> np.ndarray:
    return pc.index_in(ids, value_set=universe).to_numpy(zero_copy_only=False)


def _lists(matrix: sp.csr_matrix, values: type) -> tuple[pa.Array, pa.Array]:
    """A CSR matrix as two list columns (a row's column numbers and its values), each row's
    entries in the matrix's own order, so reading them back gives the same matrix."""
    offsets = pa.array(matrix.indptr.astype(np.int32))
    return (pa.ListArray.from_arrays(offsets, pa.array(matrix.indices.astype(np.int32))),
            pa.ListArray.from_arrays(offsets, pa.array(matrix.data.astype(values))))


def build(catalogue: pa.Table, embeddings: pa.Table, content: pa.Table,
          covisitation: pa.Table, default_dim: int, ds: str,
          content_dim: int | None = None, seed: int = 0) -> pa.Table:
    """The item context rows of a date (pure).

    Args:
        catalogue: ``silver/items`` rows as of the date (``item_id, available, boost,
            categories``).
        embeddings: ``gold/item_embeddings`` rows (``id, vector``).
        content: ``gold/item_content`` rows (``id, vector, content_vector``): ``vector`` is
            the content-mapped CF-space vector that stands in for items without ALS.
        covisitation: ``gold/covisitation`` rows (``item_id, neighbor_id, score``).
        default_dim: the vector size when no table has one (``als.factors``).
        ds: the partition value.
        content_dim: project wider content features onto their top ``content_dim``
            singular directions (seeded with ``seed``) before normalising; None: keep them.

    Returns:
        The ``gold/item_context`` schema, one row per item, sorted by ``item_id``.
    """
    ids = pa.concat_arrays([catalogue.column("item_id").combine_chunks().cast(pa.string()),
                            embeddings.column("id").combine_chunks().cast(pa.string()),
                            content.column("id").combine_chunks().cast(pa.string())])
    universe = pc.unique(ids).sort()
    n = len(universe)
    cf = list_matrix_f32(embeddings.column("vector"))
    mapped = list_matrix_f32(content.column("vector"))
    dim = cf.shape[1] if cf.size else (mapped.shape[1] if mapped.size else default_dim)
    vectors = np.zeros((n, dim), np.float32)
    has_cf = np.zeros(n, bool)
    has_vector = np.zeros(n, bool)
    crow = _rows_of(content.column("id"), universe)
    if content.num_rows and mapped.shape[1] == dim:
        vectors[crow], has_vector[crow] = mapped, True
    if embeddings.num_rows:
        erow = _rows_of(embeddings.column("id"), universe)
        vectors[erow], has_cf[erow], has_vector[erow] = cf, True, True
    raw_col = "content_vector" if content.num_rows and \
        content.column("content_vector").null_count == 0 else "vector"
    raw = list_matrix_f32(content.column(raw_col)) if content.num_rows else \
        np.zeros((0, 0), np.float32)
    features = np.zeros((n, max(raw.shape[1], 1)), np.float32)
    if raw.size:
        features[crow] = unit_rows(raw)
        if content_dim is not None and features.shape[1] > content_dim:
            basis = top_right_singular_vectors(features[crow], content_dim, seed)
            features = unit_rows(features @ basis)
    src = _rows_of(covisitation.column("item_id"), universe)
    dst = _rows_of(covisitation.column("neighbor_id"), universe)
    keep = (src >= 0) & (dst >= 0) if len(src) else np.zeros(0, bool)
    scores = covisitation.column("score").to_numpy()
    covis = sp.csr_matrix((scores[keep].astype(np.float32), (src[keep], dst[keep])),
                          shape=(n, n), dtype=np.float32)
    graph = item_graph(vectors, has_cf, covis)
    covis_rows, covis_scores = _lists(covis, np.float32)
    graph_rows, graph_scores = _lists(graph, np.float32)
    cat_rows = _rows_of(catalogue.column("item_id"), universe)
    in_catalogue = np.zeros(n, bool)
    in_catalogue[cat_rows] = True
    available = np.ones(n, bool)
    available[cat_rows] = catalogue.column("available").to_numpy(zero_copy_only=False)
    boost = np.ones(n, np.float64)
    boost[cat_rows] = catalogue.column("boost").to_numpy(zero_copy_only=False)
    category = np.full(n, None, object)
    if catalogue.num_rows:  # the first category (the unit of the diversity cap), or None
        heads = pc.list_slice(catalogue.column("categories").combine_chunks(), 0, 1)
        has = pc.fill_null(pc.greater(pc.list_value_length(heads), 0), False).to_numpy(
            zero_copy_only=False)
        category[cat_rows[has]] = pc.list_flatten(heads).to_numpy(zero_copy_only=False)

    def fixed(matrix: np.ndarray) -> pa.Array:
        flat = pa.array(matrix.ravel())
        return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]).cast(
            pa.list_(pa.float32()))

    return pa.table({
        "item_id": universe, "vector": fixed(vectors), "has_cf": pa.array(has_cf),
        "has_vector": pa.array(has_vector), "content": fixed(features),
        "covis_rows": covis_rows, "covis_scores": covis_scores,
        "graph_rows": graph_rows, "graph_scores": graph_scores,
        "in_catalogue": pa.array(in_catalogue), "available": pa.array(available),
        "boost": pa.array(boost), "category": pa.array(category, pa.string()),
        "ds": pa.array([ds] * n, pa.string()),
    }, schema=ITEM_CONTEXT.schema)


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict[str, Any]:
    """Build ``gold/item_context/ds=<ds>`` from the gold and silver tables of ``ds``.

    Raises:
        EmptyInput: no ``silver/items`` snapshot at or before ``ds`` and no item vectors.
    """
    lake = Lake(settings)
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    catalogue = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                                columns=["item_id", "available", "boost", "categories"])
    embeddings = lake.read_arrow(ITEM_EMBEDDINGS.name, [ds], columns=["id", "vector"])
    if catalogue.num_rows == 0 and embeddings.num_rows == 0:
        raise EmptyInput(f"no catalogue snapshot at or before {ds} and no item vectors for it")
    content = lake.read_arrow(ITEM_CONTENT.name, [ds],
                              columns=["id", "vector", "content_vector"])
    covis = lake.read_arrow(COVISITATION.name, [ds], columns=["item_id", "neighbor_id",
                                                              "score"])
    table = build(catalogue, embeddings, content, covis, settings.als.factors, ds,
                  settings.content.retrieval_dim, settings.seed)
    version = lake.overwrite_partitions(ITEM_CONTEXT.name, table, [ds])
    has_cf = table.column("has_cf").to_numpy(zero_copy_only=False)
    return {"ds": ds, "items": table.num_rows, "with_cf": int(has_cf.sum()),
            "graph_edges": int(pc.sum(pc.list_value_length(table.column("graph_rows")))
                               .as_py() or 0),
            "catalogue_partition": items_ds, "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe item-context",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    print(json.dumps(run(None, settings_from_args(args), args.ds)))
    return 0
