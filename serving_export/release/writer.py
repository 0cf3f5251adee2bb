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
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from conf.errors import ReleaseExists, ReleaseNotFound
from serving_export.release import arrays as rb
from serving_export.release.data import ReleaseData
from serving_export.release.files import ReleaseFiles
from serving_export.release.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SUCCESS,
    TMP_MARK,
    check_release_id,
    encode_ids,
    fsync_path,
    lookup_rows,
    sha256_file,
)
from serving_export.release.layout import (
    item_universe,
    write_items,
    write_popular,
    write_ranked,
    write_user_side,
)

logger = logging.getLogger(__name__)

_SURFACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def _faiss_ids_to_item_rows(files: ReleaseFiles, data: ReleaseData,
                            item_ids: np.ndarray) -> None:
    """Rewrite the copied FAISS id maps from rows of ``data.item_embeddings`` (as the
    exporter builds them) to the release's item rows, which the service reads."""
    if data.item_embeddings is None:
        raise ValueError("faiss_dir needs item_embeddings: its ids are their rows")
    rows = lookup_rows(item_ids, encode_ids([str(i) for i in data.item_embeddings.ids]))
    meta = json.loads((files.tmp / "faiss/meta.json").read_text(encoding="utf-8"))
    for shard in meta["shards"]:
        path = f"faiss/{shard['ids']}"
        local = np.load(files.tmp / path, allow_pickle=False)
        if len(local) and (local.min() < 0 or local.max() >= len(rows)):
            raise ValueError(f"{path}: ids outside the {len(rows)} item embeddings")
        (files.tmp / path).unlink()  # a copy, never a parent's hard link
        files.save(path, rows[local])


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
    from serving_export.release.reader import verify_release

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
        files = ReleaseFiles(tmp, root / parent if parent else None, parent_manifest)
        vocab: dict[str, list[str]] = {}
        pvocab = (parent_manifest or {}).get("vocab", {})
        if parent_manifest is None:
            item_ids = item_universe(data, tables)
            vocab["categories"] = write_items(files, tables.get("items"), item_ids,
                                               data.item_embeddings)
        else:
            files.link_group("items")
            item_ids = files.parent_array("items/ids.npy")
            vocab["categories"] = list(pvocab.get("categories", []))
        if "similar_items" in tables:
            write_ranked(files, "similar", rb.ranked_lists(
                tables["similar_items"], "item_id", "similar_item_id", item_ids, item_ids,
                "similar_items"))
        else:
            files.link_group("similar")
        if "popularity" in tables:
            vocab["popular_segments"] = write_popular(files, tables["popularity"], item_ids)
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
            users = write_user_side(files, data, user_tables, item_ids, parent_manifest)
        vocab.update(sources=users["sources"], user_segments=users["user_segments"])
        if data.faiss_dir is not None:
            shutil.copytree(Path(data.faiss_dir), tmp / "faiss")
            _faiss_ids_to_item_rows(files, data, item_ids)
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
