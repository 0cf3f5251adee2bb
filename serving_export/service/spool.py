"""The durable event spool: accepted events as JSON lines, read by ``recpipe ingest``.

Files are ``<dir>/events-<UTC time>-<pid>-<seq>.jsonl``; names sort by creation time. The
file being written is named ``...jsonl.open`` and renamed to ``.jsonl`` when it is closed
(past ``rotate_bytes`` or ``rotate_s``, or at shutdown), so a reader that takes only
``*.jsonl`` sees complete files. Every :meth:`EventSpool.append` writes whole lines and
fsyncs before returning; :class:`GroupCommitSpool` lets concurrent requests share one
fsync. Leftover ``.open`` files of a process that died are sealed at start, dropping a torn
last line.

Line columns: ``event_id``, ``user_id``, ``item_id``, ``event_type``, ``value`` (number or
null), ``ts`` (ISO-8601 UTC), ``surface`` (string or null).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conf.errors import SpoolError

logger = logging.getLogger(__name__)

COLUMNS = ("event_id", "user_id", "item_id", "event_type", "value", "ts", "surface")
OPEN_SUFFIX = ".jsonl.open"
DONE_SUFFIX = ".jsonl"




def encode_event(record: Mapping[str, Any]) -> bytes:
    """One event as a spool line (and a Kafka message) carries it, without the newline."""
    return json.dumps({k: record.get(k) for k in COLUMNS}, separators=(",", ":")).encode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _seal(path: Path) -> Path:
    """Truncate a torn last line of an ``.open`` file and rename it ``.jsonl``."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        logger.warning("spool %s: dropping a torn last line (%d bytes)", path.name,
                       len(data) - end)
        with open(path, "r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
    done = path.with_name(path.name[: -len(OPEN_SUFFIX)] + DONE_SUFFIX)
    os.replace(path, done)
    return done


class EventSpool:
    """Append-only, size- and age-rotated JSON-lines files. Thread-safe.

    Args:
        directory: the spool folder (created).
        rotate_bytes: close a file once it reaches this size.
        rotate_s: close a file this many seconds after it was opened.
        clock: epoch seconds (tests pass a fake).
    """

    def __init__(self, directory: str | Path, rotate_bytes: int, rotate_s: float,
                 clock: Callable[[], float] = time.time):
        if rotate_bytes < 1 or rotate_s <= 0:
            raise ValueError(f"rotate_bytes ({rotate_bytes}) and rotate_s ({rotate_s}) "
                             f"must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes, self.rotate_s, self.clock = rotate_bytes, rotate_s, clock
        self._lock = threading.Lock()
        self._fh: Any = None
        self._path: Path | None = None
        self._opened = 0.0
        self._size = 0
        self._seq = 0
        self.recover()

    def recover(self) -> list[Path]:
        """Seal ``.open`` files left by processes that are gone; return the sealed paths."""
        sealed = []
        for path in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
            try:
                pid = int(path.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                sealed.append(_seal(path))
        return sealed

    def _open(self) -> None:
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self._seq += 1
        self._path = self.directory / f"events-{stamp}-{os.getpid()}-{self._seq:06d}{OPEN_SUFFIX}"
        self._fh = open(self._path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        self._opened, self._size = now, 0
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _close(self) -> Path | None:
        if self._fh is None:
            return None
        self._fh.close()
        self._fh = None
        assert self._path is not None
        done = self._path.with_name(self._path.name[: -len(OPEN_SUFFIX)] + DONE_SUFFIX)
        os.replace(self._path, done)
        self._path = None
        return done

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Write ``records`` as lines and fsync; rotate first if the file is full or old.

        Raises:
            SpoolError: the write or fsync failed (nothing may be assumed durable).
        """
        if not records:
            return
        data = b"".join(encode_event(r) + b"\n" for r in records)
        with self._lock:
            try:
                if self._fh is not None and (
                    self._size >= self.rotate_bytes
                    or self.clock() - self._opened >= self.rotate_s
                ):
                    self._close()
                if self._fh is None:
                    self._open()
                view = memoryview(data)
                while view:
                    written = self._fh.write(view)
                    view = view[written:]
                os.fsync(self._fh.fileno())
                self._size += len(data)
            except OSError as exc:
                raise SpoolError(f"spool write failed: {exc}") from exc

    def maybe_rotate(self) -> Path | None:
        """Close the open file if it is past ``rotate_s``; return the closed file."""
        with self._lock:
            if self._fh is not None and self.clock() - self._opened >= self.rotate_s:
                return self._close()
        return None

    def close(self) -> Path | None:
        """Close (seal) the open file; return it."""
        with self._lock:
            return self._close()


def spool_files(source: str | Path, include_open: bool = False) -> list[Path]:
    """Spool files of a folder (or the one file given), in time order."""
    source = Path(source)
    if source.is_file():
        return [source]
    files = sorted(source.glob(f"*{DONE_SUFFIX}"))
    if include_open:
        files = sorted([*files, *source.glob(f"*{OPEN_SUFFIX}")])
    return files


def read_spool(source: str | Path, include_open: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the events of a spool folder or file, in write order; torn lines are skipped."""
    for path in spool_files(source, include_open):
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    logger.warning("spool %s: skipping malformed line", path.name)


class GroupCommitSpool:
    """Async front of an :class:`EventSpool`: concurrent appends share one write + fsync,
    done in a worker thread so the event loop never blocks on the disk."""

    def __init__(self, spool: EventSpool):
        self.spool = spool
        self._pending: list[tuple[Sequence[Mapping[str, Any]], asyncio.Future[None]]] = []
        self._writing = False

    async def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Return once ``records`` are on disk. Raises ``SpoolError``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((records, future))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                records = [r for recs, _ in batch for r in recs]
                try:
                    await asyncio.to_thread(self.spool.append, records)
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, SpoolError)
                                              else SpoolError(str(exc)))
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._writing = False
