"""Publish, roll back and prune releases: one pointer file, swapped atomically.

``<root>/CURRENT`` holds the live release id. It is replaced by writing a temporary file,
fsync and ``os.replace``, and only ever points at a release that has ``_SUCCESS``, verifies
(sizes and SHA-256) and passed the gate. Every change is appended to ``<root>/HISTORY``
(JSON lines); replaying it gives the stack of published releases, whose entry below the live
one is the rollback target. Changes hold an exclusive lock on ``<root>/.lock``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conf.errors import PublishError, ReleaseError, ReleaseGateFailed, ReleaseNotFound
from serving_export.release.format import (
    CURRENT,
    HISTORY,
    LOCK,
    MANIFEST,
    SUCCESS,
    TMP_MARK,
    check_release_id,
    fsync_path,
    read_manifest,
)
from serving_export.release.reader import verify_release

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReleaseInfo:
    """One directory under the releases root, as ``recpipe release list`` shows it."""

    release_id: str
    complete: bool
    ds: str | None
    created_at: str | None
    gate_passed: bool | None
    parent: str | None
    current: bool


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current_release(root: str | Path) -> str | None:
    """The id in ``CURRENT``, or ``None`` when nothing was published.

    Raises:
        PublishError: ``CURRENT`` does not hold a valid release id.
    """
    path = Path(root) / CURRENT
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    try:
        return check_release_id(text)
    except ValueError as exc:
        raise PublishError(f"{path} is malformed: {exc}") from exc


def read_history(root: str | Path) -> list[dict[str, Any]]:
    """Entries of ``HISTORY`` (``at``, ``action``, ``release_id``, ``previous``), oldest
    first; a torn last line (crash while appending) is skipped."""
    path = Path(root) / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            logger.warning("skipping malformed HISTORY line %r", line[:80])
            continue
        if isinstance(entry, dict) and "release_id" in entry:
            out.append(entry)
    return out


def publish_stack(history: list[dict[str, Any]]) -> list[str]:
    """Replay history into the stack of published releases (live one last).

    A publish pushes; a rollback to a release on the stack pops down to it, to any other
    release pushes it.
    """
    stack: list[str] = []
    for entry in history:
        rid = entry["release_id"]
        if entry.get("action") == "rollback" and rid in stack:
            del stack[len(stack) - stack[::-1].index(rid):]
        elif not stack or stack[-1] != rid:
            stack.append(rid)
    return stack


def rollback_target(root: str | Path) -> str | None:
    """The release ``rollback`` without an id would go to: the published release below the
    live one that still exists complete, or ``None``."""
    root = Path(root)
    current = current_release(root)
    stack = publish_stack(read_history(root))
    while stack and stack[-1] == current:
        stack.pop()
    for rid in reversed(stack):
        if rid != current and (root / rid / SUCCESS).is_file():
            return rid
    return None


def _write_current(root: Path, release_id: str) -> None:
    tmp = root / f"{CURRENT}{TMP_MARK}{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(release_id + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)
    fsync_path(root)


def _append_history(root: Path, entry: dict[str, Any]) -> None:
    with open(root / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _switch(root: Path, release_id: str, action: str,
            note: dict[str, Any] | None = None) -> str | None:
    check_release_id(release_id)
    path = root / release_id
    if not path.is_dir():
        raise ReleaseNotFound(f"release {release_id!r} not found in {root}")
    manifest = verify_release(path)
    gate = manifest.get("gate") or {}
    if gate.get("passed") is not True:
        reasons = "; ".join(gate.get("reasons") or []) or "no reason recorded"
        raise ReleaseGateFailed(f"release {release_id!r} did not pass the gate: {reasons}")
    previous = current_release(root)
    _write_current(root, release_id)
    _append_history(root, {
        "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": action, "release_id": release_id, "previous": previous, **(note or {}),
    })
    logger.info("%s: CURRENT %s -> %s", action, previous, release_id)
    return previous


def publish(root: str | Path, release_id: str, note: dict[str, Any] | None = None
            ) -> str | None:
    """Point ``CURRENT`` at ``release_id``; return the previously live id. ``note`` is added
    to the history entry (e.g. a forced publish's reason).

    Raises:
        ValueError: the id is malformed.
        ReleaseNotFound, ReleaseIncomplete, ReleaseCorrupt: the release cannot be served.
        ReleaseGateFailed: its manifest says the gate did not pass.
    """
    root = Path(root)
    with _locked(root):
        return _switch(root, release_id, "publish", note)


def rollback(root: str | Path, release_id: str | None = None) -> str:
    """Point ``CURRENT`` back at ``release_id`` (default: the previously published one).

    Returns:
        The id now live.

    Raises:
        PublishError: no id given and there is nothing to roll back to.
        ReleaseError: as :func:`publish`.
    """
    root = Path(root)
    with _locked(root):
        target = release_id or rollback_target(root)
        if target is None:
            raise PublishError("nothing to roll back to: no earlier published release exists")
        if target == current_release(root):
            raise PublishError(f"release {target!r} is already live")
        _switch(root, target, "rollback")
        return target


PRESWAP_SUFFIX = ".preswap.json"
"""``<release_id>.preswap.json`` beside a release: its pre-swap report (``preswap.py``)."""
RUN_SUMMARY_SUFFIX = ".summary.json"
"""``<release_id>.summary.json`` beside a release: the summary of the run that built it
(``recpipe status --write``); pruned with the release."""


def list_releases(root: str | Path) -> list[ReleaseInfo]:
    """Every release directory (temporary build folders excluded), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    try:
        current = current_release(root)
    except PublishError:
        current = None
    out = []
    for path in root.iterdir():
        if not path.is_dir() or TMP_MARK in path.name:
            continue
        try:
            check_release_id(path.name)
        except ValueError:
            continue
        manifest: dict[str, Any] = {}
        if (path / MANIFEST).is_file():
            try:
                manifest = read_manifest(path)
            except (OSError, ValueError):
                manifest = {}
        out.append(ReleaseInfo(
            release_id=path.name,
            complete=(path / SUCCESS).is_file(),
            ds=manifest.get("ds"),
            created_at=manifest.get("created_at"),
            gate_passed=(manifest.get("gate") or {}).get("passed"),
            parent=manifest.get("parent"),
            current=path.name == current,
        ))
    return sorted(out, key=lambda r: (r.created_at or "", r.release_id))


def prune(root: str | Path, keep: int, *, stale_tmp_s: float = 6 * 3600,
          dry_run: bool = False) -> list[str]:
    """Delete complete releases beyond the ``keep`` newest, and stale build folders.

    ``CURRENT`` and the rollback target are never deleted, whatever ``keep`` says;
    incomplete release directories are left for a person to look at.

    Args:
        root: the releases root.
        keep: how many of the newest complete releases to keep (>= 1).
        stale_tmp_s: temporary build folders older than this (seconds) are removed.
        dry_run: only return what would be deleted.

    Returns:
        Names of the deleted (or, with ``dry_run``, deletable) directories.

    Raises:
        ValueError: ``keep`` is below 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(root)
    if not root.is_dir():
        return []
    with _locked(root):
        protected = {current_release(root), rollback_target(root)} - {None}
        complete = [r for r in list_releases(root) if r.complete]
        newest = {r.release_id for r in complete[::-1][:keep]}
        doomed = [r.release_id for r in complete
                  if r.release_id not in newest and r.release_id not in protected]
        now = time.time()
        doomed += [p.name for p in root.iterdir()
                   if p.is_dir() and TMP_MARK in p.name and now - p.stat().st_mtime > stale_tmp_s]
        if not dry_run:
            for name in doomed:
                shutil.rmtree(root / name)
                for suffix in (RUN_SUMMARY_SUFFIX, PRESWAP_SUFFIX):
                    (root / f"{name}{suffix}").unlink(missing_ok=True)
                logger.info("pruned %s", name)
        return doomed


__all__ = [
    "ReleaseError", "ReleaseInfo", "current_release", "list_releases", "prune", "publish",
    "publish_stack", "read_history", "rollback", "rollback_target",
]
