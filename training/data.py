"""Streams of Arrow record batches for training: Parquet files or in-memory tables.

Nothing here holds more than ``buffer_rows`` rows (plus one file's batch) in memory, so the
training examples need not fit in RAM. Order is reproducible: files are visited in an order
drawn from the given generator, and rows are shuffled within a buffer with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from conf.errors import InputDataError, SchemaError, UsageError


def parquet_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (searched recursively for ``*.parquet``), sorted.

    Raises:
        FileNotFoundError: a path does not exist, or no Parquet file was found.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.parquet")))
        elif p.is_file():
            files.append(p)
        else:
            raise InputDataError(f"no such file or folder: {p}")
    if not files:
        raise InputDataError(f"no Parquet files under {[str(p) for p in paths]}")
    return files


def parquet_batches(
    files: Sequence[Path],
    columns: Sequence[str],
    optional: Sequence[str] = (),
    batch_size: int = 65_536,
    rng: np.random.Generator | None = None,
) -> Iterator[pa.RecordBatch]:
    """Read ``columns`` (and ``optional`` ones where present) from Parquet files.

    Args:
        files: Parquet files.
        columns: columns every file must have.
        optional: columns read only from the files that have them.
        batch_size: most rows per record batch.
        rng: if given, files are visited in a random order drawn from it.

    Yields:
        Record batches of at most ``batch_size`` rows.

    Raises:
        SchemaError: a file lacks one of ``columns``.
    """
    order = rng.permutation(len(files)) if rng is not None else range(len(files))
    for i in order:
        dataset = ds.dataset(str(files[i]), format="parquet")
        names = dataset.schema.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise SchemaError(f"{files[i]} lacks columns {missing}; it has {names}")
        wanted = list(columns) + [c for c in optional if c in names and c not in columns]
        yield from dataset.to_batches(columns=wanted, batch_size=batch_size)


def table_batches(
    table: pa.Table, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[pa.RecordBatch]:
    """Slice an in-memory table into record batches, rows permuted if ``rng`` is given."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if rng is not None:
        table = table.take(pa.array(rng.permutation(table.num_rows)))
    for start in range(0, table.num_rows, batch_size):
        yield from table.slice(start, batch_size).combine_chunks().to_batches()


def shuffle_rebatch(
    batches: Iterable[pa.RecordBatch],
    batch_size: int,
    buffer_rows: int,
    rng: np.random.Generator | None,
) -> Iterator[pa.Table]:
    """Re-cut a stream into ``batch_size`` rows, shuffling within a buffer.

    Args:
        batches: the input stream (record batches of any size, one schema).
        batch_size: rows per output batch (the last one may be smaller).
        buffer_rows: rows collected before shuffling and emitting (at least ``batch_size``).
        rng: shuffles the buffer; ``None`` keeps the input order.

    Yields:
        Tables of ``batch_size`` rows (one chunk each), the last one possibly smaller.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    buffer_rows = max(buffer_rows, batch_size)
    held: list[pa.RecordBatch] = []
    n_held = 0

    def cut(final: bool) -> Iterator[pa.Table]:
        nonlocal held, n_held
        table = pa.Table.from_batches(held)
        if rng is not None:
            table = table.take(pa.array(rng.permutation(table.num_rows)))
        full = (table.num_rows // batch_size) * batch_size
        end = table.num_rows if final else full
        for start in range(0, end, batch_size):
            yield table.slice(start, batch_size).combine_chunks()
        rest = table.slice(end).combine_chunks()
        held = rest.to_batches() if rest.num_rows else []
        n_held = rest.num_rows

    for batch in batches:
        if batch.num_rows == 0:
            continue
        held.append(batch)
        n_held += batch.num_rows
        if n_held >= buffer_rows:
            yield from cut(final=False)
    if n_held:
        yield from cut(final=True)
