"""The item side of a date, built once (``gold/item_context``) and read back by every stage."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from conf.errors import EmptyInput
from jobs.item_context import build, run
from jobs.item_side import read_item_context
from jobs.lake import Lake
from jobs.tables import ITEM_CONTEXT

DS = "2024-02-01"
VEC = {"a": [1.0, 0.0], "b": [0.6, 0.8]}          # ALS vectors (b at cosine 0.6 from a)
MAPPED = {"a": [0.9, 0.1], "b": [0.5, 0.5], "c": [0.0, 2.0]}  # content-mapped CF vectors
RAW = {"a": [3.0, 4.0, 0.0], "b": [0.0, 0.0, 2.0], "c": [1.0, 0.0, 0.0]}


def inputs(store_raw: bool = True):
    catalogue = pa.table({"item_id": ["c", "a", "b"], "available": [False, True, True],
                          "boost": [1.0, 2.0, 1.0],
                          "categories": pa.array([[], ["x", "y"], None],
                                                 pa.list_(pa.string()))})
    embeddings = pa.table({"id": ["b", "a"], "vector": pa.array([VEC["b"], VEC["a"]],
                                                                pa.list_(pa.float32()))})
    raw = [RAW[i] for i in "abc"] if store_raw else [None] * 3
    content = pa.table({"id": ["a", "b", "c"],
                        "vector": pa.array([MAPPED[i] for i in "abc"], pa.list_(pa.float32())),
                        "content_vector": pa.array(raw, pa.list_(pa.float32()))})
    covis = pa.table({"item_id": ["a", "b", "c", "zz"], "neighbor_id": ["b", "a", "a", "a"],
                      "score": [0.5, 0.25, 0.2, 9.0]})
    return catalogue, embeddings, content, covis


def test_build_by_hand():
    table = build(*inputs(), default_dim=7, ds=DS)
    assert table.schema.equals(ITEM_CONTEXT.schema)
    assert table.column("item_id").to_pylist() == ["a", "b", "c"]
    # ALS vectors where there are, the content-mapped one for the cold item c
    assert table.column("vector").to_pylist() == [VEC["a"], pytest.approx(VEC["b"]),
                                                  MAPPED["c"]]
    assert table.column("has_cf").to_pylist() == [True, True, False]
    assert table.column("has_vector").to_pylist() == [True, True, True]
    assert table.column("content").to_pylist()[0] == pytest.approx([0.6, 0.8, 0.0])
    # co-visitation rows (the pair with an unknown item is dropped)
    assert table.column("covis_rows").to_pylist() == [[1], [0], [0]]
    assert table.column("covis_scores").to_pylist() == [[0.5], [0.25], pytest.approx([0.2])]
    # the graph adds each ALS item's nearest ALS neighbour by cosine (a <-> b: 0.6)
    graph = dict(zip(table.column("graph_rows").to_pylist()[0],
                     table.column("graph_scores").to_pylist()[0], strict=True))
    assert graph == {1: pytest.approx(0.5 + 0.6)}
    # the rules' attributes: first category (none for an empty or missing list)
    assert table.column("category").to_pylist() == ["x", None, None]
    assert table.column("available").to_pylist() == [True, True, False]
    assert table.column("boost").to_pylist() == [2.0, 1.0, 1.0]


def test_without_raw_content_the_mapped_vectors_are_the_content():
    table = build(*inputs(store_raw=False), default_dim=7, ds=DS)
    c = table.column("content").to_pylist()[2]
    assert c == pytest.approx([0.0, 1.0])  # MAPPED["c"], unit length


def test_written_once_and_read_back_the_same(settings):
    lake = Lake(settings)
    catalogue, embeddings, content, covis = inputs()
    lake.overwrite_partitions("silver/items", catalogue.append_column(
        "ds", pa.array([DS] * 3)).append_column(
        "title", pa.array(["C", "A", "B"])).append_column(
        "attributes", pa.array([[]] * 3, pa.map_(pa.string(), pa.string()))).append_column(
        "created_at", pa.array([None] * 3, pa.timestamp("us", "UTC"))))
    lake.overwrite_partitions("gold/item_embeddings", embeddings.append_column(
        "model_version", pa.array(["m"] * 2)).append_column("ds", pa.array([DS] * 2)))
    lake.overwrite_partitions("gold/item_content", content.append_column(
        "has_cf", pa.array([True, True, False])).append_column("ds", pa.array([DS] * 3)))
    lake.overwrite_partitions("gold/covisitation", covis.append_column(
        "co_count", pa.array([1] * 4)).append_column(
        "rank", pa.array([1] * 4, pa.int32())).append_column("ds", pa.array([DS] * 4)))
    with pytest.raises(EmptyInput, match="recpipe item-context"):
        read_item_context(lake, DS, settings)
    report = run(None, settings, DS)
    assert (report["items"], report["with_cf"]) == (3, 2)
    ctx = read_item_context(lake, DS, settings)
    built = build(catalogue, embeddings, content, covis, settings.als.factors, DS)
    retrieval = ctx.retrieval()
    assert list(retrieval.item_ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(retrieval.item_vectors, np.asarray(
        built.column("vector").to_pylist(), np.float32))
    assert retrieval.neighbours[0, 1] == pytest.approx(1.1) and retrieval.neighbours.nnz == 3
    side = ctx.feature_side()
    assert side.covis.toarray().tolist() == [[0, 0.5, 0], [0.25, 0, 0],
                                             [pytest.approx(0.2), 0, 0]]
    assert side.has_als.tolist() == [True, True, True]
    meta = ctx.meta()
    assert meta.item_ids.to_pylist() == ["a", "b", "c"]
    assert meta.available.tolist() == [True, True, False]
    assert meta.category[0] >= 0 and meta.category[1:].tolist() == [-1, -1]
    # no popularity table for the date: the overall list is empty, not missing
    assert len(retrieval.popular["all"][0]) == 0 and not math.isnan(
        float(retrieval.item_vectors.sum()))


def test_wide_content_is_projected_onto_its_top_singular_directions():
    catalogue, embeddings, _, covis = inputs()
    rng = np.random.default_rng(0)
    topics = rng.standard_normal((2, 40))  # a and b share a topic, c has the other
    raw = np.stack([topics[0], topics[0], topics[1]]) + 0.01 * rng.standard_normal((3, 40))
    content = pa.table({"id": ["a", "b", "c"],
                        "vector": pa.array([MAPPED[i] for i in "abc"], pa.list_(pa.float32())),
                        "content_vector": pa.array(raw.astype(np.float32).tolist(),
                                                   pa.list_(pa.float32()))})
    wide = build(catalogue, embeddings, content, covis, 7, DS)
    narrow = build(catalogue, embeddings, content, covis, 7, DS, content_dim=2, seed=1)
    assert len(wide.column("content")[0]) == 40 and len(narrow.column("content")[0]) == 2
    x = np.asarray(narrow.column("content").to_pylist())
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    w = np.asarray(wide.column("content").to_pylist())
    np.testing.assert_allclose(x @ x.T, w @ w.T, atol=0.02)  # cosines kept
    assert narrow.column("vector").equals(wide.column("vector"))
