"""Loaders of user-supplied interaction files into the raw events format.

Each ``load_*`` returns one :class:`pyarrow.Table` with
:data:`~jobs.datasets.formats.RAW_EVENTS_SCHEMA`; each ``iter_*`` yields the same rows in
chunks of at most ``chunk_rows`` (for files too large to hold, see ``recpipe data convert``).

- MovieLens ``u.data`` (100K: ``user<TAB>item<TAB>rating<TAB>epoch``),
  ``ratings.dat`` (1M/10M: ``user::item::rating::epoch``) and ``ratings.csv``
  (20M/25M/latest: header ``userId,movieId,rating,timestamp``) become ``rating`` events with
  ``event_id`` ``<prefix>-<user>-<item>-<epoch>``.
- A generic events file (CSV with header, or Parquet) already in our columns is checked for
  the columns and passed through as strings (the ingest job validates the values).

A malformed line raises :class:`ValueError` naming the file and line. Values that parse but
are out of range (a rating of 7) are left to the ingest job, which quarantines them.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conf.errors import InputDataError, UsageError
from jobs.datasets.formats import RAW_EVENTS_SCHEMA, events_table

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 500_000
RATINGS_CSV_HEADER = "userId,movieId,rating,timestamp"
PARQUET_SUFFIXES = (".parquet", ".pq")


def _parse_epoch(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if value.is_integer() else None


def _iter_ratings(
    path: Path,
    split: Callable[[str], list[str]],
    prefix: str,
    chunk_rows: int,
    header: str | None = None,
) -> Iterator[pa.Table]:
    """Parse ``user, item, rating, epoch`` lines into raw ``rating`` event chunks."""
    if chunk_rows <= 0:
        raise UsageError(f"chunk_rows must be positive, got {chunk_rows}")
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    epochs: list[int] = []

    def flush() -> pa.Table:
        epoch = np.array(epochs, dtype=np.int64)
        table = events_table(
            event_id=[
                f"{prefix}-{u}-{i}-{e}" for u, i, e in zip(users, items, epochs, strict=True)
            ],
            user_id=users,
            item_id=items,
            event_type="rating",
            epoch_s=epoch,
            value=np.array(ratings, dtype=np.float64),
        )
        users.clear(), items.clear(), ratings.clear(), epochs.clear()
        return table

    with path.open("r", encoding="utf-8", errors="strict", newline="") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if header is not None and lineno == 1:
                if line.lstrip("\ufeff").strip() != header:
                    raise InputDataError(f"{path}:1: expected the header {header!r}, got {line!r}")
                continue
            if not line.strip():
                continue
            fields = split(line)
            if len(fields) != 4:
                raise InputDataError(
                    f"{path}:{lineno}: expected 4 fields (user, item, rating, timestamp), "
                    f"got {len(fields)}: {line[:80]!r}"
                )
            user, item, rating_text, epoch_text = (f.strip() for f in fields)
            if not user or not item:
                raise InputDataError(f"{path}:{lineno}: empty user or item id: {line[:80]!r}")
            try:
                rating = float(rating_text)
            except ValueError:
                rating = math.nan
            if not math.isfinite(rating):
                raise InputDataError(f"{path}:{lineno}: rating {rating_text!r} is not a number")
            epoch = _parse_epoch(epoch_text)
            if epoch is None:
                raise InputDataError(
                    f"{path}:{lineno}: timestamp {epoch_text!r} is not integer epoch seconds"
                )
            users.append(user)
            items.append(item)
            ratings.append(rating)
            epochs.append(epoch)
            if len(users) >= chunk_rows:
                yield flush()
    if users:
        yield flush()


def _concat(chunks: Iterator[pa.Table]) -> pa.Table:
    tables = list(chunks)
    return pa.concat_tables(tables) if tables else RAW_EVENTS_SCHEMA.empty_table()


def iter_u_data(
    path: Path | str, prefix: str = "ml100k", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Yield MovieLens 100K ``u.data`` (tab separated, no header) as raw event chunks."""
    return _iter_ratings(Path(path), lambda line: line.split("\t"), prefix, chunk_rows)


def iter_ratings_dat(
    path: Path | str, prefix: str = "ml1m", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Yield MovieLens 1M/10M ``ratings.dat`` (``::`` separated) as raw event chunks."""
    return _iter_ratings(Path(path), lambda line: line.split("::"), prefix, chunk_rows)


def iter_ratings_csv(
    path: Path | str, prefix: str = "ml", chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Yield MovieLens ``ratings.csv`` (header ``userId,movieId,rating,timestamp``) in chunks."""
    return _iter_ratings(
        Path(path), lambda line: line.split(","), prefix, chunk_rows, header=RATINGS_CSV_HEADER
    )


def load_u_data(path: Path | str, prefix: str = "ml100k") -> pa.Table:
    """Load MovieLens 100K ``u.data`` into raw ``rating`` events.

    Args:
        path: the file; lines ``user<TAB>item<TAB>rating<TAB>epoch_seconds``.
        prefix: start of ``event_id`` (``<prefix>-<user>-<item>-<epoch>``).

    Returns:
        A table with ``RAW_EVENTS_SCHEMA``, one row per line, in file order.

    Raises:
        ValueError: a line is malformed (message names the file and line).
    """
    return _concat(iter_u_data(path, prefix))


def load_ratings_dat(path: Path | str, prefix: str = "ml1m") -> pa.Table:
    """Load MovieLens ``ratings.dat`` (``user::item::rating::epoch``); see :func:`load_u_data`."""
    return _concat(iter_ratings_dat(path, prefix))


def load_ratings_csv(path: Path | str, prefix: str = "ml") -> pa.Table:
    """Load MovieLens ``ratings.csv`` (with its header); see :func:`load_u_data`."""
    return _concat(iter_ratings_csv(path, prefix))


def _missing_columns(path: Path, columns: list[str]) -> None:
    missing = [name for name in RAW_EVENTS_SCHEMA.names if name not in columns]
    if missing:
        raise InputDataError(f"{path}: missing columns {missing} (found {columns})")
    extra = [name for name in columns if name not in RAW_EVENTS_SCHEMA.names]
    if extra:
        logger.warning("%s: ignoring columns %s", path, extra)


def _empty_to_null(array: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def _as_string(path: Path, name: str, array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return _empty_to_null(array.cast(pa.string()))
    if pa.types.is_timestamp(array.type):
        if array.type.tz is None:
            logger.warning("%s: column %s is a naive timestamp, taken as UTC", path, name)
            array = pc.assume_timezone(array, "UTC")
        seconds = array.cast(pa.timestamp("s", tz="UTC"), safe=False)
        return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
    try:
        return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputDataError(
            f"{path}: column {name!r} of type {array.type} cannot be read as strings"
        ) from exc


def _iter_events_parquet(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(path)
    _missing_columns(path, parquet.schema_arrow.names)
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=RAW_EVENTS_SCHEMA.names):
        columns = [_as_string(path, n, batch.column(n)) for n in RAW_EVENTS_SCHEMA.names]
        yield pa.Table.from_arrays(columns, schema=RAW_EVENTS_SCHEMA)


def _iter_events_csv(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
        _missing_columns(path, header)
        if len(set(header)) != len(header):
            raise InputDataError(f"{path}:1: duplicate column names in {header}")
        index = [header.index(name) for name in RAW_EVENTS_SCHEMA.names]
        rows: list[list[str | None]] = [[] for _ in index]

        def flush() -> pa.Table:
            table = pa.Table.from_arrays(
                [pa.array(col, pa.string()) for col in rows], schema=RAW_EVENTS_SCHEMA
            )
            for col in rows:
                col.clear()
            return table

        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise InputDataError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields, got {len(record)}"
                )
            for col, i in zip(rows, index, strict=True):
                col.append(record[i] or None)
            if len(rows[0]) >= chunk_rows:
                yield flush()
        if rows[0]:
            yield flush()


def iter_events_file(
    path: Path | str, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pa.Table]:
    """Yield a generic events file (``.csv`` with header, or ``.parquet``) in chunks.

    See :func:`load_events_file`.
    """
    path = Path(path)
    if chunk_rows <= 0:
        raise UsageError(f"chunk_rows must be positive, got {chunk_rows}")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _iter_events_parquet(path, chunk_rows)
    if path.suffix.lower() == ".csv":
        return _iter_events_csv(path, chunk_rows)
    raise InputDataError(f"{path}: unknown events file type {path.suffix!r} (use .csv or .parquet)")


def load_events_file(path: Path | str) -> pa.Table:
    """Load an events file already in our columns.

    Columns are matched by name (order free, extra columns dropped with a warning). Every
    value becomes a string; empty strings become null; a Parquet timestamp column becomes
    ISO-8601 UTC (naive timestamps are taken as UTC). Values are not validated here.

    Args:
        path: ``.csv`` (with a header line) or ``.parquet``/``.pq``.

    Returns:
        A table with ``RAW_EVENTS_SCHEMA``.

    Raises:
        ValueError: unknown file type, missing columns (all are named), a CSV line with the
            wrong number of fields (file and line named), or a column that cannot be strings.
    """
    return _concat(iter_events_file(path))
