"""The on-disk layout of a release: file names, id encoding, checksums, manifest I/O.

A release is ``<root>/<release_id>/``: ``manifest.json``, ``_SUCCESS`` (holding the SHA-256
of ``manifest.json``, written last) and these files, every array a ``.npy`` read with
``mmap_mode="r"`` (zero copy) and item metadata also as an Arrow IPC file:

- ``items/``: ``ids.npy`` (I,) bytes ids sorted, so an item's row is its position
  (``searchsorted``); ``available.npy`` (I,) bool; ``boost.npy`` (I,) float32 multiplier;
  ``cat_offsets.npy`` (I+1,) int64 and ``cat_codes.npy`` (C,) int32 (categories, CSR);
  ``vectors.npy`` (I, D) float32 and ``has_vector.npy`` (I,) bool if item embeddings were
  given; ``meta.arrow`` (item_id, title, categories, available, boost) for people and tools.
- ``users/``: ``ids.npy`` (U,) sorted bytes ids; ``segment.npy`` (U,) int32 code into
  ``vocab.user_segments`` (-1 none); ``purchased_offsets.npy`` (U+1,) int64 and
  ``purchased_items.npy`` int32 item rows; ``blocked_offsets.npy`` and ``blocked_items.npy``
  the same for items the user hid or disliked (negative feedback; never shown to them);
  ``vectors.npy`` (U, D), ``has_vector.npy`` (U,).
- ``topn/<surface>/``: ``offsets.npy`` (U+1,) int64, ``items.npy`` int32 item rows,
  ``scores.npy`` float32, ``sources.npy`` uint32 bit mask over ``vocab.sources``.
- ``similar/``: ``offsets.npy`` (I+1,), ``items.npy``, ``scores.npy``.
- ``popular/``: ``offsets.npy`` (S+1,) over ``vocab.popular_segments``, ``items.npy``,
  ``scores.npy``; the overall list is the segment named :data:`OVERALL`.
- ``faiss/``: the sharded FAISS index over the item vectors (``items/vectors.npy`` rows
  that have one), as :mod:`serving_export.index.shards` writes it; its id maps hold item
  rows, so an ANN hit is an item row like every other list's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "recpipe-release"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
CURRENT = "CURRENT"
HISTORY = "HISTORY"
LOCK = ".lock"
TMP_MARK = ".tmp-"
OVERALL = "__overall__"
"""Name of the overall (segment-free) popular list."""

#: File groups an incremental release may take over from its parent unchanged.
GROUPS = ("items", "users", "topn", "similar", "popular", "faiss")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RESERVED = {CURRENT, HISTORY, LOCK}
_CHUNK = 4 * 1024 * 1024


def check_release_id(release_id: str) -> str:
    """Return ``release_id`` if it can name a release directory.

    Raises:
        ValueError: it is empty, too long (over 128), reserved, holds characters other than
            letters, digits, ``.``, ``_``, ``-``, or contains the temporary marker.
    """
    if (
        not isinstance(release_id, str)
        or not _ID_RE.match(release_id)
        or release_id in _RESERVED
        or TMP_MARK in release_id
        or ".." in release_id
    ):
        raise ValueError(
            f"invalid release id {release_id!r}: use 1-128 letters, digits, '.', '_', '-', "
            f"starting with a letter or digit"
        )
    return release_id


def encode_ids(ids: Iterable[str]) -> np.ndarray:
    """Encode string ids as a fixed-width UTF-8 bytes array (numpy ``S`` dtype).

    Args:
        ids: N ids, each non-empty without NUL characters.

    Returns:
        (N,) ``S<w>`` array, ``w`` the longest encoded id (at least 1).

    Raises:
        ValueError: an id is empty or holds a NUL character.
    """
    encoded = [str(value).encode("utf-8") for value in ids]
    for raw in encoded:
        if not raw or b"\x00" in raw:
            raise ValueError(f"invalid id {raw!r}: ids must be non-empty without NUL")
    width = max((len(raw) for raw in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def lookup_rows(sorted_ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Rows of ``keys`` in the sorted id array, -1 where absent.

    Args:
        sorted_ids: (N,) sorted ``S`` array.
        keys: (K,) ``S`` array.

    Returns:
        (K,) int64 rows.
    """
    if len(sorted_ids) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, keys)
    clipped = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[clipped] == keys
    return np.where(found, clipped, -1).astype(np.int64)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (releases the GIL while hashing)."""
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def hash_files(paths: list[Path], workers: int = 2) -> list[str]:
    """SHA-256 of many files, ``workers`` at a time (hashlib runs outside the GIL)."""
    if len(paths) <= 1 or workers <= 1:
        return [sha256_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(sha256_file, paths))


def fsync_path(path: Path) -> None:
    """fsync a file or directory so its contents or entries survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file, fsync and ``os.replace``."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_manifest(release_dir: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` of a release (no verification)."""
    with open(release_dir / MANIFEST, encoding="utf-8") as fh:
        return json.load(fh)
