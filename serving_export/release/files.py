"""The files of a release being built: arrays saved into the temporary folder, file groups
hard-linked from the parent of an incremental release, and the manifest's file list."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from conf.errors import ReleaseError
from serving_export.release.format import (
    MANIFEST,
    SUCCESS,
    hash_files,
)

logger = logging.getLogger(__name__)


class ReleaseFiles:
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
