"""Convert one user-supplied interaction file into ``events.parquet`` (raw events format)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from conf.errors import InputDataError, UsageError
from jobs.datasets.fixed_split import fixed_split_to_events, read_fixed_split
from jobs.datasets.formats import RAW_EVENTS_SCHEMA, write_parquet_stream
from jobs.datasets.loaders import (
    DEFAULT_CHUNK_ROWS,
    iter_events_file,
    iter_ratings_csv,
    iter_ratings_dat,
    iter_u_data,
)

logger = logging.getLogger(__name__)


def _fixed_split(path: Path, prefix: str | None, chunk_rows: int) -> Iterator[pa.Table]:
    users, items = read_fixed_split(path)
    yield fixed_split_to_events(users, items, prefix=prefix or f"{path.parent.name}-{path.stem}")


def _with_prefix(
    loader: Callable[..., Iterator[pa.Table]],
) -> Callable[[Path, str | None, int], Iterator[pa.Table]]:
    def load(path: Path, prefix: str | None, chunk_rows: int) -> Iterator[pa.Table]:
        if prefix is None:
            return loader(path, chunk_rows=chunk_rows)
        return loader(path, prefix=prefix, chunk_rows=chunk_rows)

    return load


FORMATS: dict[str, Callable[[Path, str | None, int], Iterator[pa.Table]]] = {
    "u.data": _with_prefix(iter_u_data),
    "ratings.dat": _with_prefix(iter_ratings_dat),
    "ratings.csv": _with_prefix(iter_ratings_csv),
    "fixed-split": _fixed_split,
    "events": lambda path, prefix, chunk_rows: iter_events_file(path, chunk_rows),
}
"""Input format name -> chunk reader ``(path, event_id prefix or None, chunk_rows)``."""


def convert_file(
    fmt: str,
    input_path: Path,
    out_dir: Path,
    prefix: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Path:
    """Read ``input_path`` as ``fmt`` and write ``out_dir / "events.parquet"``, chunk by chunk.

    Args:
        fmt: one of :data:`FORMATS`.
        input_path: the file to read.
        out_dir: output folder (created).
        prefix: ``event_id`` prefix; default per format (``ml100k``, ``ml1m``, ``ml``, or
            ``<folder>-<stem>`` for fixed-split files). Ignored for ``events``.
        chunk_rows: rows per chunk (and Parquet row group).

    Returns:
        The written file.

    Raises:
        ValueError: unknown format, or malformed input (file and line named).
        FileNotFoundError: ``input_path`` does not exist.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    input_path = Path(input_path)
    if not input_path.is_file():
        raise InputDataError(f"input file not found: {input_path}")
    out = Path(out_dir) / "events.parquet"
    write_parquet_stream(FORMATS[fmt](input_path, prefix, chunk_rows), out, RAW_EVENTS_SCHEMA)
    return out
