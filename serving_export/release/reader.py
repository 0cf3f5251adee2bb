"""Verify and load a release: every array memory-mapped, nothing copied at load.

:func:`verify_release` checks ``_SUCCESS`` (which holds the manifest's SHA-256), then every
file the manifest lists for presence, size and SHA-256. :class:`Release` maps the arrays
(``np.load(mmap_mode="r")``) and answers O(1)/O(log U) lookups: an id's row is found by
binary search in the sorted id array, so loading builds no per-user Python object and the
resident memory grows only with what is actually read.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from conf.errors import IndexCorrupt, ReleaseCorrupt, ReleaseIncomplete, ReleaseNotFound
from serving_export.index.shards import ShardedIndex
from serving_export.release.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    OVERALL,
    SUCCESS,
    hash_files,
    sha256_file,
)

logger = logging.getLogger(__name__)


def verify_release(path: str | Path, *, check_hashes: bool = True) -> dict[str, Any]:
    """Check a release directory and return its manifest.

    Args:
        path: the release directory.
        check_hashes: also compare every file's SHA-256 (sizes are always compared).

    Returns:
        The parsed manifest.

    Raises:
        ReleaseNotFound: no such directory.
        ReleaseIncomplete: ``_SUCCESS``, the manifest or a listed file is missing.
        ReleaseCorrupt: a checksum or size differs, or the manifest is malformed.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReleaseNotFound(f"release {path.name!r} not found ({path})")
    if not (path / SUCCESS).is_file():
        raise ReleaseIncomplete(f"release {path.name!r} has no {SUCCESS}: incomplete build")
    if not (path / MANIFEST).is_file():
        raise ReleaseIncomplete(f"release {path.name!r} has no {MANIFEST}")
    expected = (path / SUCCESS).read_text(encoding="utf-8").strip()
    if expected != sha256_file(path / MANIFEST):
        raise ReleaseCorrupt(f"release {path.name!r}: {MANIFEST} does not match its "
                             f"checksum in {SUCCESS}")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise ReleaseCorrupt(f"release {path.name!r}: unsupported format "
                                 f"{manifest.get('format')!r} v{manifest.get('format_version')}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ReleaseCorrupt(f"release {path.name!r}: malformed {MANIFEST}: {exc}") from exc
    if manifest.get("release_id") != path.name:
        raise ReleaseCorrupt(f"release {path.name!r}: manifest names release "
                             f"{manifest.get('release_id')!r}")
    for entry in files:
        file = path / entry["path"]
        if not file.is_file():
            raise ReleaseIncomplete(f"release {path.name!r}: missing file {entry['path']}")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ReleaseCorrupt(f"release {path.name!r}: {entry['path']} has {size} bytes, "
                                 f"manifest says {entry['bytes']}")
    if check_hashes:
        digests = hash_files([path / e["path"] for e in files])
        for entry, digest in zip(files, digests, strict=True):
            if digest != entry["sha256"]:
                raise ReleaseCorrupt(f"release {path.name!r}: SHA-256 mismatch in "
                                     f"{entry['path']}")
    return manifest


ROW_CACHE = 1 << 16
"""Ids whose rows each loaded release remembers (per id kind; about 10 MiB when full)."""


def _load_ann(folder: Path, n_items: int) -> ShardedIndex:
    """Open the release's shards memory-mapped and check that every id is an item row.

    Raises:
        ReleaseCorrupt: the index is missing, unreadable, or names rows the release lacks.
    """
    try:
        index = ShardedIndex.load(folder, mmap=True)
    except (IndexCorrupt, RuntimeError, OSError, ValueError) as exc:
        raise ReleaseCorrupt(f"release {folder.parent.name!r}: FAISS shards cannot be "
                             f"loaded: {exc}") from exc
    for number, ids in enumerate(index.id_maps):
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= n_items):
            raise ReleaseCorrupt(f"release {folder.parent.name!r}: FAISS shard {number} names "
                                 f"item rows outside 0..{n_items - 1}")
    return index


def _map(path: Path) -> np.ndarray:
    # A plain ndarray view of the memory map: cheaper to index than np.memmap.
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


class Release:
    """A loaded, read-only release.

    Rows: users and items are numbered by their position in the sorted id arrays (U users,
    I items, D embedding dimensions).
    """

    def __init__(self, path: str | Path, manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest
        self.id: str = manifest["release_id"]
        self.id_json = json.dumps(self.id)
        self.ds: str = manifest["ds"]
        self.surfaces: tuple[str, ...] = tuple(manifest["surfaces"])
        vocab = manifest["vocab"]
        self.sources_vocab: list[str] = list(vocab.get("sources", []))
        self.categories_vocab: list[str] = list(vocab.get("categories", []))
        self._category_code = {name: i for i, name in enumerate(self.categories_vocab)}
        p = self.path
        self.item_ids = _map(p / "items/ids.npy")
        self.user_ids = _map(p / "users/ids.npy")
        self.available = _map(p / "items/available.npy")
        self.boost = _map(p / "items/boost.npy")
        self.any_boost = bool(np.any(self.boost != 1.0))
        self.all_available = bool(self.available.all())
        unavailable = np.flatnonzero(~self.available)
        self.unavailable_rows: frozenset[int] | None = (
            frozenset(unavailable.tolist()) if len(unavailable) <= 100_000 else None)
        """Unavailable item rows as a set when few (fast membership on the hot path)."""
        self.cat_offsets = _map(p / "items/cat_offsets.npy")
        self.cat_codes = _map(p / "items/cat_codes.npy")
        self.user_segment = _map(p / "users/segment.npy")
        self.purchased_offsets = _map(p / "users/purchased_offsets.npy")
        self.purchased_items = _map(p / "users/purchased_items.npy")
        has_blocked = (p / "users/blocked_offsets.npy").is_file()  # older releases: none
        self.blocked_offsets = (_map(p / "users/blocked_offsets.npy") if has_blocked
                                else np.zeros(len(self.user_ids) + 1, dtype=np.int64))
        self.blocked_items = (_map(p / "users/blocked_items.npy") if has_blocked
                              else np.zeros(0, dtype=np.int32))
        self._topn = {
            s: tuple(_map(p / f"topn/{s}/{k}.npy") for k in ("offsets", "items", "scores",
                                                              "sources"))
            for s in self.surfaces
        }
        self.similar_offsets = _map(p / "similar/offsets.npy")
        self.similar_items = _map(p / "similar/items.npy")
        self.similar_scores = _map(p / "similar/scores.npy")
        pop_off = _map(p / "popular/offsets.npy")
        pop_items = _map(p / "popular/items.npy")
        pop_scores = _map(p / "popular/scores.npy")
        self.popular_lists = {
            name: (pop_items[pop_off[i]:pop_off[i + 1]], pop_scores[pop_off[i]:pop_off[i + 1]])
            for i, name in enumerate(vocab.get("popular_segments", []))
        }
        # user segment code -> popular list (the overall list when the segment has none).
        overall = self.popular_lists.get(OVERALL, (np.zeros(0, np.int32), np.zeros(0, np.float32)))
        self.overall_popular = overall
        self._segment_names = list(vocab.get("user_segments", []))
        self._segment_popular = [self.popular_lists.get(s, overall) for s in self._segment_names]
        has = (p / "users/vectors.npy").is_file() and (p / "items/vectors.npy").is_file()
        self.user_vectors = _map(p / "users/vectors.npy") if has else None
        self.user_has_vector = _map(p / "users/has_vector.npy") if has else None
        self.item_vectors = _map(p / "items/vectors.npy") if has else None
        self.item_has_vector = _map(p / "items/has_vector.npy") if has else None
        self._ann_lock = threading.Lock()
        self.ann: ShardedIndex | None = None
        """The release's FAISS shards over the item vectors (ids are item rows), if any."""
        if manifest.get("faiss") and self.item_vectors is not None:
            self.ann = _load_ann(p / "faiss", len(self.item_ids))
        self._meta: pa.Table | None = None
        self._item_json: list[str | None] = [None] * len(self.item_ids)
        self._item_head: list[str | None] = [None] * len(self.item_ids)
        self.tail_cache: dict[str, dict[int | None, str]] = {}
        """JSON tails of answer items per source and tag (the service's, bounded by it)."""
        self.answer_cache: dict[tuple, str] = {}
        """Serialised item arrays of the service's answers, keyed by their entries."""
        self.answer_cache_limit = 16384
        """Most entries of ``answer_cache`` (the service sets ``serving.answer_cache_entries``;
        0: no cache)."""
        self._user_width = self.user_ids.dtype.itemsize
        self._item_width = self.item_ids.dtype.itemsize
        # The hot path reads lists through memoryviews (a slice's ``tolist`` without numpy's
        # per-call dispatch) and remembers recently asked ids' rows (bounded).
        self._topn_views = {s: tuple(memoryview(a) for a in arrays)
                            for s, arrays in self._topn.items()}
        self._purchased_views = (memoryview(self.purchased_offsets),
                                 memoryview(self.purchased_items))
        self.user_row = lru_cache(maxsize=ROW_CACHE)(self._user_row)
        self.item_row = lru_cache(maxsize=ROW_CACHE)(self._item_row)
        self.category_mask = lru_cache(maxsize=256)(self._category_mask)
        self.sources_names = lru_cache(maxsize=4096)(self._sources_names)
        self.sources_json = lru_cache(maxsize=4096)(self._sources_json)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> Release:
        """Verify (unless ``verify=False``) and map a release directory.

        Raises:
            ReleaseNotFound, ReleaseIncomplete, ReleaseCorrupt: see :func:`verify_release`.
        """
        manifest = verify_release(path, check_hashes=verify)
        try:
            return cls(path, manifest)
        except (OSError, ValueError, KeyError, RuntimeError, IndexCorrupt) as exc:
            raise ReleaseCorrupt(f"release {Path(path).name!r} cannot be loaded: {exc}") from exc

    # -- ids ------------------------------------------------------------------------------
    @staticmethod
    def _row(ids: np.ndarray, width: int, key: str) -> int:
        raw = key.encode("utf-8")
        if not raw or len(raw) > width or len(ids) == 0:
            return -1
        pos = int(ids.searchsorted(raw))
        if pos < len(ids) and ids[pos] == raw:
            return pos
        return -1

    def _user_row(self, user_id: str) -> int:
        """Row of a user, -1 if the release does not know them (``user_row``: cached)."""
        return self._row(self.user_ids, self._user_width, user_id)

    def _item_row(self, item_id: str) -> int:
        """Row of an item, -1 if unknown (``item_row``: cached)."""
        return self._row(self.item_ids, self._item_width, item_id)

    def item_rows(self, item_ids: list[str]) -> np.ndarray:
        """(K,) int64 rows of ``item_ids``, -1 where unknown."""
        return np.fromiter((self.item_row(i) for i in item_ids), dtype=np.int64,
                           count=len(item_ids))

    def item_id(self, row: int) -> str:
        """Id of an item row."""
        return self.item_ids[row].decode("utf-8")

    def item_json(self, row: int) -> str:
        """The item id as a JSON string literal (cached: the hot path joins these)."""
        cached = self._item_json[row]
        if cached is None:
            cached = json.dumps(self.item_ids[row].decode("utf-8"))
            self._item_json[row] = cached
        return cached

    def item_head(self, row: int) -> str:
        """Cached JSON head of an answer item: ``{"item_id":"<id>","score":``."""
        cached = self._item_head[row]
        if cached is None:
            cached = f'{{"item_id":{self.item_json(row)},"score":'
            self._item_head[row] = cached
        return cached

    def item_heads(self, rows: list[int]) -> list[str]:
        """:meth:`item_head` of each row."""
        cache = self._item_head
        heads = [cache[r] for r in rows]
        if not all(heads):
            heads = [h or self.item_head(r) for h, r in zip(heads, rows, strict=True)]
        return heads  # type: ignore[return-value]

    def title(self, row: int) -> str:
        """An item's title (its id when it has none), read from ``items/meta.arrow``."""
        if self._meta is None:
            source = pa.memory_map(str(self.path / "items/meta.arrow"))
            self._meta = pa.ipc.open_file(source).read_all()  # zero copy: mapped buffers
        title = self._meta.column("title")[row].as_py()
        return title if title else self.item_id(row)

    # -- ANN --------------------------------------------------------------------------------
    def ann_search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` item rows of highest inner product with ``vector`` from the FAISS shards
        (searched at once on FAISS's threads, the tuned ``efSearch``), best first, with their
        scores; fewer when the index holds fewer items.

        Raises:
            LookupError: the release has no FAISS shards.
        """
        if self.ann is None:
            raise LookupError(f"release {self.id} has no FAISS shards")
        with self._ann_lock:  # one FAISS IndexShards object: searches one at a time
            return self.ann.lookup(np.asarray(vector, dtype=np.float32), k)

    # -- lists ----------------------------------------------------------------------------
    def topn(self, surface: str, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A user's precomputed list: item rows (int32), scores (float32), source masks."""
        offsets, items, scores, sources = self._topn[surface]
        start, end = int(offsets[row]), int(offsets[row + 1])
        return items[start:end], scores[start:end], sources[start:end]

    def topn_head(self, surface: str, row: int, width: int) -> tuple[list, list, list]:
        """The first ``width`` entries of a user's list as Python lists (item rows, scores,
        source masks): what the service's common case reads, without numpy calls."""
        offsets, items, scores, sources = self._topn_views[surface]
        start = offsets[row]
        end = min(offsets[row + 1], start + width)
        return items[start:end].tolist(), scores[start:end].tolist(), sources[start:end].tolist()

    def topn_rows(self, surface: str, row: int, width: int) -> list[int]:
        """The item rows of :meth:`topn_head` alone."""
        offsets, items = self._topn_views[surface][:2]
        start = offsets[row]
        return items[start:min(offsets[row + 1], start + width)].tolist()

    def purchased_rows(self, user_row: int) -> list[int]:
        """:meth:`purchased` as a Python list."""
        if user_row < 0:
            return []
        offsets, items = self._purchased_views
        return items[offsets[user_row]:offsets[user_row + 1]].tolist()

    def blocked_rows(self, user_row: int) -> list[int]:
        """Item rows the user hid, marked not interested or disliked (never shown again)."""
        if user_row < 0:
            return []
        start, end = int(self.blocked_offsets[user_row]), int(self.blocked_offsets[user_row + 1])
        return self.blocked_items[start:end].tolist() if end > start else []

    def similar(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """An item's similar items: item rows (int32) and scores (float32), best first."""
        start, end = int(self.similar_offsets[row]), int(self.similar_offsets[row + 1])
        return self.similar_items[start:end], self.similar_scores[start:end]

    def popular_for(self, user_row: int) -> tuple[np.ndarray, np.ndarray, str | None]:
        """Popular list of a user's segment (overall when unknown): items, scores, segment."""
        if user_row >= 0:
            code = int(self.user_segment[user_row])
            if code >= 0:
                return (*self._segment_popular[code], self._segment_names[code])
        return (*self.overall_popular, None)

    def purchased(self, user_row: int) -> np.ndarray:
        """Item rows the user already bought (int32)."""
        if user_row < 0:
            return self.purchased_items[:0]
        start, end = self.purchased_offsets[user_row], self.purchased_offsets[user_row + 1]
        return self.purchased_items[start:end]

    def item_categories(self, row: int) -> list[str]:
        """Category names of an item."""
        codes = self.cat_codes[self.cat_offsets[row]:self.cat_offsets[row + 1]]
        return [self.categories_vocab[c] for c in codes]

    def _category_mask(self, name: str) -> np.ndarray | None:
        code = self._category_code.get(name)
        if code is None:
            return None
        counts = np.diff(self.cat_offsets)
        owners = np.repeat(np.arange(len(self.item_ids)), counts)
        mask = np.zeros(len(self.item_ids), dtype=bool)
        mask[owners[self.cat_codes == code]] = True
        return mask

    def _sources_names(self, mask: int) -> tuple[str, ...]:
        return tuple(name for k, name in enumerate(self.sources_vocab) if mask >> k & 1)

    def _sources_json(self, mask: int) -> str:
        return json.dumps(list(self._sources_names(mask)), separators=(",", ":"))

    def topn_table(self, surface: str) -> pa.Table:
        """The surface's lists as a long table (user_id, rank, item_id, score, sources)."""
        offsets, items, scores, sources = self._topn[surface]
        counts = np.diff(offsets)
        users = np.repeat(np.arange(len(self.user_ids)), counts)
        rank = np.arange(len(items)) - np.repeat(offsets[:-1], counts) + 1
        names = [list(self._sources_names(int(m))) for m in np.unique(sources)]
        lookup = dict(zip(np.unique(sources).tolist(), names, strict=True))
        return pa.table({
            "user_id": pa.array(np.char.decode(self.user_ids[users], "utf-8")),
            "rank": pa.array(rank, pa.int32()),
            "item_id": pa.array(np.char.decode(self.item_ids[items], "utf-8")),
            "score": pa.array(np.asarray(scores)),
            "sources": pa.array([lookup[m] for m in sources.tolist()], pa.list_(pa.string())),
        })

    def __repr__(self) -> str:
        return (f"Release({self.id!r}, users={len(self.user_ids)}, "
                f"items={len(self.item_ids)}, surfaces={list(self.surfaces)})")


def load_release(path: str | Path, *, verify: bool = True) -> Release:
    """Verify and load the release at ``path`` (see :meth:`Release.load`)."""
    return Release.load(path, verify=verify)
