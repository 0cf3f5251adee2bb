"""Laying a release's tables out as arrays: the item universe and item metadata, ranked
lists (top-N per surface, similar items), popular lists per segment, and the user side (new,
or merged over the parent's for an incremental release). See
:mod:`serving_export.release.format` for the files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving_export.release import arrays as rb
from serving_export.release.data import Embeddings, ReleaseData
from serving_export.release.files import ReleaseFiles
from serving_export.release.format import (
    OVERALL,
    encode_ids,
    lookup_rows,
)

logger = logging.getLogger(__name__)


def item_universe(data: ReleaseData, tables: dict[str, pa.Table]) -> np.ndarray:
    lists: list[Sequence[str]] = []
    if "items" in tables:
        rb.require_columns(tables["items"], ["item_id"], "items")
        lists.append(rb.distinct_ids(tables["items"].column("item_id"), "items.item_id"))
    for key, table in tables.items():
        if key.startswith("topn:") or key == "popularity":
            rb.require_columns(table, ["item_id"], key)
            lists.append(rb.distinct_ids(table.column("item_id"), f"{key}.item_id"))
        elif key == "similar_items":
            rb.require_columns(table, ["item_id", "similar_item_id"], key)
            lists.append(rb.distinct_ids(table.column("item_id"), f"{key}.item_id"))
            lists.append(rb.distinct_ids(table.column("similar_item_id"), f"{key}.similar"))
    if data.item_embeddings is not None:
        lists.append([str(i) for i in data.item_embeddings.ids])
    return rb.universe(*lists)


def vectors_for(emb: Embeddings, ids: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Scatter ``emb`` into (len(ids), D) float32 rows plus a (len(ids),) has-vector mask."""
    vectors = np.asarray(emb.vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(emb.ids):
        raise ValueError(f"{name}: vectors shape {vectors.shape} does not match "
                         f"{len(emb.ids)} ids")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{name}: NaN or infinite values; refusing to write them")
    keys = encode_ids([str(i) for i in emb.ids])
    if len(np.unique(keys)) != len(keys):
        raise ValueError(f"{name}: duplicate ids")
    rows = lookup_rows(ids, keys)
    if (rows < 0).any():
        raise ValueError(f"{name}: id {keys[np.argmax(rows < 0)]!r} unknown to the release")
    out = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
    has = np.zeros(len(ids), dtype=bool)
    out[rows] = vectors
    has[rows] = True
    return out, has


def write_items(files: ReleaseFiles, table: pa.Table | None, ids: np.ndarray,
                 emb: Embeddings | None) -> list[str]:
    n = len(ids)
    files.save("items/ids.npy", ids)
    index = np.full(n, -1, dtype=np.int64)
    if table is not None:
        rows = rb.rows_of(table.column("item_id"), ids, "items.item_id")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("items: duplicate item_id")
        index[rows] = np.arange(len(rows))
    take = pa.array(index, mask=index < 0)

    def column(name: str, default: Any, type_: pa.DataType) -> pa.Array:
        if table is None or name not in table.column_names:
            return pa.array([default] * n, type=type_) if default is not None else pa.nulls(
                n, type_)
        values = pc.cast(table.column(name).combine_chunks().take(take), type_)
        return pc.fill_null(values, default) if default is not None else values

    available = column("available", True, pa.bool_())
    boost_arr = column("boost", 1.0, pa.float32())
    boost = boost_arr.to_numpy(zero_copy_only=False).astype(np.float32)
    if not np.isfinite(boost).all() or (boost < 0).any():
        raise ValueError("items.boost: every boost must be finite and >= 0")
    titles = column("title", "", pa.string())
    categories = column("categories", None, pa.list_(pa.string()))
    lengths = pc.fill_null(pc.list_value_length(categories), 0).to_numpy(zero_copy_only=False)
    cat_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=cat_offsets[1:])
    flat = pc.list_flatten(categories)
    vocab: list[str] = sorted(set(flat.to_pylist()) - {None}) if len(flat) else []
    if len(flat):
        if flat.null_count:
            raise ValueError("items.categories: null category name")
        codes = lookup_rows(encode_ids(vocab), encode_ids(flat.to_pylist())).astype(np.int32)
    else:
        codes = np.zeros(0, dtype=np.int32)
    files.save("items/available.npy", available.to_numpy(zero_copy_only=False).astype(bool))
    files.save("items/boost.npy", boost)
    files.save("items/cat_offsets.npy", cat_offsets)
    files.save("items/cat_codes.npy", codes)
    meta = pa.table({
        "item_id": pa.array([x.decode("utf-8") for x in ids.tolist()], pa.string()),
        "title": titles, "categories": categories, "available": available, "boost": boost_arr,
    })
    path = files.tmp / "items" / "meta.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, meta.schema) as writer:
        writer.write_table(meta)
    if emb is not None:
        vectors, has = vectors_for(emb, ids, "item_embeddings")
        files.save("items/vectors.npy", vectors)
        files.save("items/has_vector.npy", has)
    return vocab


def write_ranked(files: ReleaseFiles, prefix: str, lists: dict[str, np.ndarray]) -> None:
    for key, array in lists.items():
        files.save(f"{prefix}/{key}.npy", array)


def write_popular(files: ReleaseFiles, table: pa.Table, item_ids: np.ndarray) -> list[str]:
    rb.require_columns(table, ["segment", "item_id", "score"], "popularity")
    table = table.set_column(
        table.column_names.index("segment"), "segment",
        rb.normalise_segments(table.column("segment")),
    )
    vocab = sorted(rb.distinct_ids(table.column("segment"), "popularity.segment"))
    if OVERALL not in vocab:
        raise ValueError("popularity: no overall list (rows with a null or empty segment)")
    lists = rb.ranked_lists(table, "segment", "item_id", encode_ids(vocab), item_ids,
                            "popularity")
    write_ranked(files, "popular", lists)
    return vocab


def _user_item_lists(files: ReleaseFiles, has: Any, name: str, table: pa.Table | None,
                     rows: np.ndarray | None, prow: np.ndarray, ids: np.ndarray,
                     item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and item rows of the per-user list ``name`` (``purchased``, ``blocked``): the
    parent's lists, with those of the users in ``table`` replaced when it has the column."""
    n = len(ids)
    if has(f"users/{name}_offsets.npy"):
        parent = (files.parent_array(f"users/{name}_offsets.npy"),
                  {"items": files.parent_array(f"users/{name}_items.npy")})
    else:
        parent = (np.zeros(1, dtype=np.int64), {"items": np.zeros(0, dtype=np.int32)})
    take = prow.copy()
    if table is not None and rows is not None and name in table.column_names:
        col = pc.cast(table.column(name).combine_chunks(), pa.list_(pa.string()))
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(col)
        item_rows = lookup_rows(item_ids, encode_ids(flat.to_pylist())) if len(
            flat) else np.zeros(0, dtype=np.int64)
        keep = item_rows >= 0
        owner = np.repeat(np.arange(len(rows)), lengths)[keep]
        if (~keep).any():
            logger.info("users.%s: %d unknown item(s) dropped", name, int((~keep).sum()))
        upd_off = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=len(rows)), out=upd_off[1:])
        upd = (upd_off, {"items": item_rows[keep].astype(np.int32)})
        parent = rb.concat_csr(rb.gather_csr(parent[0], parent[1], prow), upd)
        take = np.arange(n, dtype=np.int64)
        take[rows] = n + np.arange(len(rows))
    off, vals = rb.gather_csr(parent[0], parent[1], take)
    return off, vals["items"]


def write_user_side(files: ReleaseFiles, data: ReleaseData, tables: dict[str, pa.Table],
               item_ids: np.ndarray, parent: dict | None) -> dict[str, Any]:
    """Write ``users/`` and ``topn/``: the parent's users updated by the given tables."""
    pvocab = (parent or {}).get("vocab", {})
    has = files.has_parent
    p_ids = files.parent_array("users/ids.npy") if has("users/ids.npy") else np.array(
        [], dtype="S1")
    lists: list[Sequence[str]] = []
    for key, table in tables.items():
        if key.startswith("topn:") or key == "users":
            rb.require_columns(table, ["user_id"], key)
            lists.append(rb.distinct_ids(table.column("user_id"), f"{key}.user_id"))
    if data.user_embeddings is not None:
        lists.append([str(i) for i in data.user_embeddings.ids])
    ids = rb.universe(p_ids, *lists)
    n = len(ids)
    prow = lookup_rows(p_ids, ids)
    known = prow >= 0
    files.save("users/ids.npy", ids)

    # Segments: parent values, replaced for users in the users table.
    seg_vocab = list(pvocab.get("user_segments", []))
    segment = np.full(n, -1, dtype=np.int32)
    if has("users/segment.npy"):
        segment[known] = files.parent_array("users/segment.npy")[prow[known]]
    table = tables.get("users")
    rows = None
    if table is not None:
        rows = rb.rows_of(table.column("user_id"), ids, "users.user_id")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("users: duplicate user_id")
        if "segment" in table.column_names:
            seg = pc.cast(table.column("segment"), pa.string()).to_pylist()
            for name in dict.fromkeys(s for s in seg if s):
                if name not in seg_vocab:
                    seg_vocab.append(name)
            code = {name: i for i, name in enumerate(seg_vocab)}
            segment[rows] = np.array([code[s] if s else -1 for s in seg], dtype=np.int32)
    files.save("users/segment.npy", segment)
    # Per-user item lists (bought; blocked by negative feedback): parent lists, replaced
    # for the users in the users table that carry the column.
    for name in ("purchased", "blocked"):
        off, vals = _user_item_lists(files, has, name, table, rows, prow, ids, item_ids)
        files.save(f"users/{name}_offsets.npy", off)
        files.save(f"users/{name}_items.npy", vals)

    # Vectors: parent rows, replaced for users in user_embeddings.
    if has("users/vectors.npy") or data.user_embeddings is not None:
        dim = None
        if has("users/vectors.npy"):
            p_vec = files.parent_array("users/vectors.npy")
            dim = p_vec.shape[1]
        if data.user_embeddings is not None:
            new_vec, new_has = vectors_for(data.user_embeddings, ids, "user_embeddings")
            if dim is not None and new_vec.shape[1] != dim:
                raise ValueError(f"user_embeddings: dimension {new_vec.shape[1]} differs "
                                 f"from the parent's {dim}")
        else:
            new_vec = np.zeros((n, dim), dtype=np.float32)
            new_has = np.zeros(n, dtype=bool)
        if dim is not None:
            p_has = files.parent_array("users/has_vector.npy")
            take = known & ~new_has
            new_vec[take] = p_vec[prow[take]]
            new_has[take] = p_has[prow[take]]
        files.save("users/vectors.npy", new_vec)
        files.save("users/has_vector.npy", new_has)

    # Top-N per surface: parent lists, replaced for users named in the surface's table.
    sources_vocab = list(pvocab.get("sources", []))
    surfaces = list(dict.fromkeys([*(parent or {}).get("surfaces", []), *(data.topn or {})]))
    counts = {}
    for surface in surfaces:
        prefix = f"topn/{surface}"
        if has(f"{prefix}/offsets.npy"):
            base = (files.parent_array(f"{prefix}/offsets.npy"),
                    {k: files.parent_array(f"{prefix}/{k}.npy")
                     for k in ("items", "scores", "sources")})
        else:
            base = (np.zeros(1, dtype=np.int64),
                    {"items": np.zeros(0, np.int32), "scores": np.zeros(0, np.float32),
                     "sources": np.zeros(0, np.uint32)})
        rows = prow
        if f"topn:{surface}" in tables:
            upd = rb.ranked_lists(tables[f"topn:{surface}"], "user_id", "item_id", ids,
                                  item_ids, f"topn[{surface}]", sources_vocab)
            updated = np.diff(upd["offsets"]) > 0
            base = rb.concat_csr(rb.gather_csr(base[0], base[1], prow),
                                 (upd.pop("offsets"), upd))
            rows = np.where(updated, n + np.arange(n), np.arange(n))
        offsets, values = rb.gather_csr(base[0], base[1], rows)
        write_ranked(files, prefix, {"offsets": offsets, **values})
        counts[surface] = int(offsets[-1])
    return {"users": n, "surfaces": surfaces, "sources": sources_vocab,
            "user_segments": seg_vocab, "topn_rows": counts,
            "user_dim": None if not (files.tmp / "users/vectors.npy").exists()
            else int(np.load(files.tmp / "users/vectors.npy", mmap_mode="r").shape[1])}
