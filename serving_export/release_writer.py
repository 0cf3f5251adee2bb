"""Write a release directory once, atomically, from in-memory tables.

The exporter reads the gold tables and calls :func:`write_release` with a
:class:`ReleaseData`; the release is built in ``<root>/<id>.tmp-XXXX`` and renamed to
``<root>/<id>`` only after ``manifest.json`` and then ``_SUCCESS`` are written and synced, so a
build that dies half way never leaves a directory with the final name.

An incremental release (``parent=...``, e.g. the hourly fold-in) hard-links every file group
it does not replace from its parent (copying when links are impossible); the item side is
fixed. Tables given for the user side are *updates*: the lists, vectors and metadata of the
users they name replace the parent's, every other user keeps the parent's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf.errors import ReleaseError, ReleaseExists, ReleaseNotFound
from serving_export import release_build as rb
from serving_export.release_format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OVERALL,
    SUCCESS,
    TMP_MARK,
    check_release_id,
    encode_ids,
    fsync_path,
    hash_files,
    lookup_rows,
    sha256_file,
)

logger = logging.getLogger(__name__)

_SURFACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        faiss_dir: a sharded FAISS index directory, copied into ``faiss/`` as it is.
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


class _Files:
    """The files of a release being built, with the parent files it links."""

    def __init__(self, tmp: Path, parent_dir: Path | None, parent_manifest: dict | None):
        self.tmp = tmp
        self.parent_dir = parent_dir
        self.parent_entries = {
            e["path"]: e for e in (parent_manifest or {}).get("files", [])
        }
        self.parent_id = (parent_manifest or {}).get("release_id")
        self.linked: dict[str, dict] = {}

    def save(self, rel: str, array: np.ndarray) -> None:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())

    def link_group(self, prefix: str) -> int:
        """Hard-link (or copy) every parent file under ``prefix/``; return the count."""
        assert self.parent_dir is not None
        count = 0
        for rel, entry in self.parent_entries.items():
            if not rel.startswith(prefix + "/"):
                continue
            dst = self.tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.parent_dir / rel, dst)
            except OSError:
                shutil.copy2(self.parent_dir / rel, dst)
            self.linked[rel] = {**entry, "origin": entry.get("origin") or self.parent_id}
            count += 1
        return count

    def parent_array(self, rel: str) -> np.ndarray:
        assert self.parent_dir is not None
        return np.load(self.parent_dir / rel, mmap_mode="r", allow_pickle=False)

    def has_parent(self, rel: str) -> bool:
        return rel in self.parent_entries

    def entries(self) -> list[dict[str, Any]]:
        paths = sorted(
            p.relative_to(self.tmp).as_posix()
            for p in self.tmp.rglob("*")
            if p.is_file() and p.name not in (MANIFEST, SUCCESS)
        )
        fresh = [p for p in paths if p not in self.linked]
        digests = dict(zip(fresh, hash_files([self.tmp / p for p in fresh]), strict=True))
        out = []
        for rel in paths:
            size = (self.tmp / rel).stat().st_size
            if rel in self.linked:
                entry = self.linked[rel]
                if entry["bytes"] != size:
                    raise ReleaseError(f"parent file {rel} changed size while linking")
                out.append({"path": rel, "bytes": size, "sha256": entry["sha256"],
                            "origin": entry["origin"]})
            else:
                out.append({"path": rel, "bytes": size, "sha256": digests[rel], "origin": None})
        return out


def _check_data(data: ReleaseData, incremental: bool) -> None:
    if not isinstance(data.ds, str) or not _DS_RE.match(data.ds):
        raise ValueError(f"invalid ds {data.ds!r}: expected YYYY-MM-DD")
    for surface in data.topn or {}:
        if not _SURFACE_RE.match(str(surface)):
            raise ValueError(f"invalid surface name {surface!r}: use [a-z][a-z0-9_]*")
    if incremental:
        if data.items is not None or data.item_embeddings is not None:
            raise ValueError("an incremental release keeps the parent's items and item "
                             "embeddings: pass items=None and item_embeddings=None")
        return
    for name in ("topn", "similar_items", "popularity"):
        if getattr(data, name) is None:
            raise ValueError(f"a full release needs {name}")
    if not data.topn:
        raise ValueError("a full release needs at least one top-N surface")


def _item_universe(data: ReleaseData, tables: dict[str, pa.Table]) -> np.ndarray:
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


def _vectors(emb: Embeddings, ids: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
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


def _write_items(files: _Files, table: pa.Table | None, ids: np.ndarray,
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
        vectors, has = _vectors(emb, ids, "item_embeddings")
        files.save("items/vectors.npy", vectors)
        files.save("items/has_vector.npy", has)
    return vocab


def _write_ranked(files: _Files, prefix: str, lists: dict[str, np.ndarray]) -> None:
    for key, array in lists.items():
        files.save(f"{prefix}/{key}.npy", array)


def _write_popular(files: _Files, table: pa.Table, item_ids: np.ndarray) -> list[str]:
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
    _write_ranked(files, "popular", lists)
    return vocab


def _user_side(files: _Files, data: ReleaseData, tables: dict[str, pa.Table],
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

    # Segment and purchased items: parent values, replaced for users in the users table.
    seg_vocab = list(pvocab.get("user_segments", []))
    segment = np.full(n, -1, dtype=np.int32)
    if has("users/segment.npy"):
        segment[known] = files.parent_array("users/segment.npy")[prow[known]]
    if has("users/purchased_offsets.npy"):
        p_pur = (files.parent_array("users/purchased_offsets.npy"),
                 {"items": files.parent_array("users/purchased_items.npy")})
    else:
        p_pur = (np.zeros(1, dtype=np.int64), {"items": np.zeros(0, dtype=np.int32)})
    pur_rows = prow.copy()
    table = tables.get("users")
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
        if "purchased" in table.column_names:
            col = pc.cast(table.column("purchased").combine_chunks(), pa.list_(pa.string()))
            lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
            flat = pc.list_flatten(col)
            item_rows = lookup_rows(item_ids, encode_ids(flat.to_pylist())) if len(
                flat) else np.zeros(0, dtype=np.int64)
            keep = item_rows >= 0
            owner = np.repeat(np.arange(len(rows)), lengths)[keep]
            if (~keep).any():
                logger.info("users.purchased: %d unknown item(s) dropped", int((~keep).sum()))
            upd_off = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(np.bincount(owner, minlength=len(rows)), out=upd_off[1:])
            upd = (upd_off, {"items": item_rows[keep].astype(np.int32)})
            p_pur = rb.concat_csr(rb.gather_csr(p_pur[0], p_pur[1], prow), upd)
            pur_rows = np.arange(n, dtype=np.int64)
            pur_rows[rows] = n + np.arange(len(rows))
    pur_off, pur_vals = rb.gather_csr(p_pur[0], p_pur[1], pur_rows)
    files.save("users/segment.npy", segment)
    files.save("users/purchased_offsets.npy", pur_off)
    files.save("users/purchased_items.npy", pur_vals["items"])

    # Vectors: parent rows, replaced for users in user_embeddings.
    if has("users/vectors.npy") or data.user_embeddings is not None:
        dim = None
        if has("users/vectors.npy"):
            p_vec = files.parent_array("users/vectors.npy")
            dim = p_vec.shape[1]
        if data.user_embeddings is not None:
            new_vec, new_has = _vectors(data.user_embeddings, ids, "user_embeddings")
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
        _write_ranked(files, prefix, {"offsets": offsets, **values})
        counts[surface] = int(offsets[-1])
    return {"users": n, "surfaces": surfaces, "sources": sources_vocab,
            "user_segments": seg_vocab, "topn_rows": counts,
            "user_dim": None if not (files.tmp / "users/vectors.npy").exists()
            else int(np.load(files.tmp / "users/vectors.npy", mmap_mode="r").shape[1])}


def write_release(
    root: str | Path,
    release_id: str,
    data: ReleaseData,
    *,
    parent: str | None = None,
    created_at: datetime | None = None,
) -> Path:
    """Write ``<root>/<release_id>/`` once and return its path.

    Args:
        root: the releases root (created if missing).
        release_id: the new release's id (letters, digits, ``._-``).
        data: the release's tables; with ``parent``, ``None`` fields are taken from the
            parent and user-side tables update it (see the module docstring).
        parent: id of the release this one is incremental on, in the same root.
        created_at: timestamp recorded in the manifest (default: now, UTC).

    Returns:
        The final release directory.

    Raises:
        ValueError: a table is malformed (the message names it and the bad value).
        ReleaseExists: a release of that id exists.
        ReleaseNotFound: the parent does not exist.
        ReleaseError: the parent fails verification.
    """
    from serving_export.release_reader import verify_release

    check_release_id(release_id)
    _check_data(data, incremental=parent is not None)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / release_id
    if final.exists():
        raise ReleaseExists(f"release {release_id!r} already exists in {root}")
    parent_manifest = None
    if parent is not None:
        check_release_id(parent)
        if not (root / parent).is_dir():
            raise ReleaseNotFound(f"parent release {parent!r} not found in {root}")
        parent_manifest = verify_release(root / parent)
    created = (created_at or datetime.now(UTC)).astimezone(UTC)

    tables: dict[str, pa.Table] = {}
    for surface, table in (data.topn or {}).items():
        tables[f"topn:{surface}"] = rb.as_table(table, f"topn[{surface}]")
    for name in ("similar_items", "popularity", "items", "users"):
        if getattr(data, name) is not None:
            tables[name] = rb.as_table(getattr(data, name), name)

    tmp = Path(tempfile.mkdtemp(prefix=f"{release_id}{TMP_MARK}", dir=root))
    try:
        files = _Files(tmp, root / parent if parent else None, parent_manifest)
        vocab: dict[str, list[str]] = {}
        pvocab = (parent_manifest or {}).get("vocab", {})
        if parent_manifest is None:
            item_ids = _item_universe(data, tables)
            vocab["categories"] = _write_items(files, tables.get("items"), item_ids,
                                               data.item_embeddings)
        else:
            files.link_group("items")
            item_ids = files.parent_array("items/ids.npy")
            vocab["categories"] = list(pvocab.get("categories", []))
        if "similar_items" in tables:
            _write_ranked(files, "similar", rb.ranked_lists(
                tables["similar_items"], "item_id", "similar_item_id", item_ids, item_ids,
                "similar_items"))
        else:
            files.link_group("similar")
        if "popularity" in tables:
            vocab["popular_segments"] = _write_popular(files, tables["popularity"], item_ids)
        else:
            files.link_group("popular")
            vocab["popular_segments"] = list(pvocab.get("popular_segments", []))
        user_tables = {k: v for k, v in tables.items() if k.startswith("topn:") or k == "users"}
        if parent_manifest is not None and not user_tables and data.user_embeddings is None:
            files.link_group("users")
            files.link_group("topn")
            users = {"users": parent_manifest["counts"]["users"],
                     "surfaces": parent_manifest["surfaces"],
                     "sources": list(pvocab.get("sources", [])),
                     "user_segments": list(pvocab.get("user_segments", [])),
                     "topn_rows": parent_manifest["counts"]["topn_rows"],
                     "user_dim": parent_manifest.get("embedding_dim")}
        else:
            users = _user_side(files, data, user_tables, item_ids, parent_manifest)
        vocab.update(sources=users["sources"], user_segments=users["user_segments"])
        if data.faiss_dir is not None:
            shutil.copytree(Path(data.faiss_dir), tmp / "faiss")
        elif parent_manifest is not None:
            files.link_group("faiss")
        item_dim = None
        if (tmp / "items/vectors.npy").exists():
            item_dim = int(np.load(tmp / "items/vectors.npy", mmap_mode="r").shape[1])
        if users["user_dim"] is not None and item_dim is not None \
                and users["user_dim"] != item_dim:
            raise ValueError(f"user embeddings have {users['user_dim']} dimensions, item "
                             f"embeddings {item_dim}")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "release_id": release_id,
            "ds": data.ds,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "parent": parent,
            "model_versions": dict(data.model_versions),
            "table_versions": dict(data.table_versions),
            "metrics": dict(data.metrics),
            "gate": {"passed": bool(data.gate.passed), "reasons": list(data.gate.reasons)},
            "surfaces": users["surfaces"],
            "counts": {"users": users["users"], "items": int(len(item_ids)),
                       "topn_rows": users["topn_rows"]},
            "embedding_dim": users["user_dim"] if users["user_dim"] is not None else item_dim,
            "vocab": vocab,
            "faiss": (tmp / "faiss").is_dir(),
            "extra": dict(data.extra),
            "files": files.entries(),
        }
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        for folder in sorted({p.parent for p in tmp.rglob("*")}, reverse=True):
            fsync_path(folder)
        with open(tmp / SUCCESS, "w", encoding="utf-8") as fh:
            fh.write(sha256_file(tmp / MANIFEST) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_path(tmp)
        if final.exists():
            raise ReleaseExists(f"release {release_id!r} already exists in {root}")
        os.rename(tmp, final)
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote release %s (%d users, %d items, parent=%s)", release_id,
                manifest["counts"]["users"], manifest["counts"]["items"], parent)
    return final
