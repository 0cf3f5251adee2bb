"""Pure array builders of the release writer: id universes, CSR lists, metadata arrays.

Tables come in as :class:`pyarrow.Table` (or anything :func:`as_table` accepts) in the
long form of the gold tables; out come numpy arrays laid out as described in
:mod:`serving_export.release_format`. Nothing here touches the disk.

Letters: N rows of an input table, G groups (users, items or segments), I items, U users,
D embedding dimensions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving_export.release.format import OVERALL, encode_ids, lookup_rows

logger = logging.getLogger(__name__)

_DUPLICATE_CHECK_MAX_ROWS = 20_000_000


def as_table(data: Any, name: str) -> pa.Table:
    """Return ``data`` as an Arrow table.

    Args:
        data: a ``pyarrow.Table``, a pandas ``DataFrame`` or a mapping of column -> values.
        name: what the table is, for error messages.

    Raises:
        TypeError: ``data`` is none of those.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, Mapping):
        return pa.table(dict(data))
    if type(data).__name__ == "DataFrame" and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"{name}: expected a pyarrow.Table, pandas.DataFrame or mapping, got "
                    f"{type(data).__name__}")


def require_columns(table: pa.Table, columns: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` naming the missing columns of ``table``."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; has {table.column_names}")


def _combined(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return column.chunk(0)
        return column.combine_chunks()
    return column


def dict_codes(column: pa.ChunkedArray | pa.Array, name: str) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encode an id column without a Python loop over its rows.

    Args:
        column: (N,) ids of any type castable to string, or a dictionary array.
        name: column name for error messages.

    Returns:
        ``(codes, values)``: (N,) int64 codes into ``values``, the distinct ids as strings.

    Raises:
        ValueError: the column holds nulls.
    """
    arr = _combined(column)
    if arr.null_count:
        raise ValueError(f"{name}: {arr.null_count} null id(s)")
    if not pa.types.is_dictionary(arr.type):
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = pc.cast(arr, pa.string())
        arr = pc.dictionary_encode(arr)
    codes = arr.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = pc.cast(arr.dictionary, pa.string()).to_pylist()
    return codes, values


def universe(*id_lists: Sequence[str] | np.ndarray) -> np.ndarray:
    """Sorted distinct encoded ids of all the given lists: (G,) ``S`` array."""
    parts = [encode_ids(ids) if not isinstance(ids, np.ndarray) else ids for ids in id_lists]
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.array([], dtype="S1")
    width = max(p.dtype.itemsize for p in parts)
    return np.unique(np.concatenate([p.astype(f"S{width}") for p in parts]))


def extend_universe(base: np.ndarray, *id_lists: Sequence[str]) -> np.ndarray:
    """``base`` ids plus the new ones, sorted: rows of ``base`` ids may move."""
    return universe(base, *id_lists)


def rows_of(column: pa.ChunkedArray | pa.Array, ids: np.ndarray, name: str) -> np.ndarray:
    """Rows of every value of an id column in the sorted id array ``ids``.

    Returns:
        (N,) int64 rows.

    Raises:
        ValueError: a value is not in ``ids`` (named in the message).
    """
    codes, values = dict_codes(column, name)
    mapping = lookup_rows(ids, encode_ids(values))
    missing = np.flatnonzero(mapping < 0)
    if len(missing):
        raise ValueError(f"{name}: {len(missing)} unknown id(s), e.g. {values[missing[0]]!r}")
    return mapping[codes]


def distinct_ids(column: pa.ChunkedArray | pa.Array, name: str) -> list[str]:
    """The distinct values of an id column as strings."""
    return dict_codes(column, name)[1]


def finite_float32(column: pa.ChunkedArray | pa.Array, name: str) -> np.ndarray:
    """(N,) float32 values of a numeric column; ``ValueError`` on null, NaN or infinity."""
    arr = _combined(column)
    if arr.null_count:
        raise ValueError(f"{name}: {arr.null_count} null value(s)")
    values = arr.to_numpy(zero_copy_only=False).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{name}: non-finite value {values[bad[0]]!r} at row {bad[0]}")
    return values


def group_order(
    groups: np.ndarray, secondary: np.ndarray, n_groups: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """Order rows by (group, secondary ascending) and count rows per group.

    Args:
        groups: (N,) int64 group of each row.
        secondary: (N,) sort key inside a group (rank, or negated score).
        n_groups: G.

    Returns:
        ``(order, offsets)``: (N,) permutation, or ``None`` when the rows are already in
        order (no copy needed); (G+1,) int64 CSR offsets.
    """
    counts = np.bincount(groups, minlength=n_groups)
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if len(groups) < 2:
        return None, offsets
    same = groups[1:] == groups[:-1]
    in_order = bool(np.all(groups[1:] >= groups[:-1])) and bool(
        np.all(secondary[1:][same] >= secondary[:-1][same])
    )
    if in_order:
        return None, offsets
    return np.lexsort((secondary, groups)), offsets


def check_unique_pairs(groups: np.ndarray, items: np.ndarray, n_items: int, name: str) -> None:
    """``ValueError`` if a (group, item) pair occurs twice (skipped past 20M rows)."""
    if len(groups) > _DUPLICATE_CHECK_MAX_ROWS:
        logger.info("%s: %d rows, duplicate check skipped", name, len(groups))
        return
    keys = groups.astype(np.int64) * max(n_items, 1) + items
    uniq, counts = np.unique(keys, return_counts=True)
    if len(uniq) != len(keys):
        dup = uniq[np.argmax(counts > 1)]
        raise ValueError(
            f"{name}: duplicate entry (group row {dup // max(n_items, 1)}, item row "
            f"{dup % max(n_items, 1)})"
        )


def source_masks(
    column: pa.ChunkedArray | pa.Array | None, n_rows: int, vocab: list[str], name: str
) -> np.ndarray:
    """Bit masks of the retrieval sources of each row.

    Args:
        column: (N,) list of strings or a string per row, or ``None`` (no sources).
        n_rows: N.
        vocab: source names known so far; new names are appended (at most 32 in all).
        name: column name for error messages.

    Returns:
        (N,) uint32 masks, bit ``k`` set when ``vocab[k]`` found the row.
    """
    masks = np.zeros(n_rows, dtype=np.uint32)
    if column is None:
        return masks
    arr = _combined(column)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        flat = pc.list_flatten(arr)
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    else:
        flat = arr
        parents = np.arange(n_rows)
    if len(flat) == 0:
        return masks
    valid = pc.is_valid(flat).to_numpy(zero_copy_only=False)
    flat = flat.filter(pa.array(valid))
    parents = parents[valid]
    if len(flat) == 0:
        return masks
    codes, values = dict_codes(flat, name)
    for value in values:
        if value not in vocab:
            vocab.append(value)
    if len(vocab) > 32:
        raise ValueError(f"{name}: {len(vocab)} distinct sources, at most 32 are supported")
    position = np.array([vocab.index(v) for v in values], dtype=np.uint32)
    np.bitwise_or.at(masks, parents, np.left_shift(np.uint32(1), position[codes]))
    return masks


def ranked_lists(
    table: pa.Table,
    group_col: str,
    item_col: str,
    group_ids: np.ndarray,
    item_ids: np.ndarray,
    name: str,
    sources_vocab: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """Turn a long ranked table into CSR lists over ``group_ids``.

    Rows are ordered by ``rank`` ascending when the table has it, else by ``score``
    descending.

    Args:
        table: N rows with ``group_col``, ``item_col``, ``score`` and optionally ``rank``
            and (when ``sources_vocab`` is given) ``sources``.
        group_ids: (G,) sorted ids of the groups; item_ids: (I,) sorted item ids.
        sources_vocab: source names, extended in place, or ``None`` to skip sources.

    Returns:
        ``offsets`` (G+1,) int64, ``items`` (N,) int32 item rows, ``scores`` (N,) float32
        and, with ``sources_vocab``, ``sources`` (N,) uint32.
    """
    require_columns(table, [group_col, item_col, "score"], name)
    groups = rows_of(table.column(group_col), group_ids, f"{name}.{group_col}")
    items = rows_of(table.column(item_col), item_ids, f"{name}.{item_col}")
    scores = finite_float32(table.column("score"), f"{name}.score")
    if "rank" in table.column_names:
        secondary = finite_float32(table.column("rank"), f"{name}.rank")
    else:
        secondary = -scores
    check_unique_pairs(groups, items, len(item_ids), name)
    order, offsets = group_order(groups, secondary, len(group_ids))
    out: dict[str, np.ndarray] = {"offsets": offsets}
    if sources_vocab is not None:
        column = table.column("sources") if "sources" in table.column_names else None
        out["sources"] = source_masks(column, table.num_rows, sources_vocab, f"{name}.sources")
    out["items"] = items.astype(np.int32)
    out["scores"] = scores
    if order is not None:
        for key in ("items", "scores", "sources"):
            if key in out:
                out[key] = out[key][order]
    return out


def normalise_segments(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Segment names as strings; null and empty become :data:`OVERALL`."""
    arr = pc.cast(_combined(column), pa.string())
    arr = pc.fill_null(arr, OVERALL)
    return pc.if_else(pc.equal(arr, ""), OVERALL, arr)


def gather_csr(
    offsets: np.ndarray, values: Mapping[str, np.ndarray], rows: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Select lists of a CSR layout in a new row order.

    Args:
        offsets: (G+1,) int64 offsets; values: arrays of length ``offsets[-1]``.
        rows: (R,) int64 source row of each output row, -1 for an empty list.

    Returns:
        ``(offsets, values)`` of the R selected lists.
    """
    safe = np.clip(rows, 0, max(len(offsets) - 2, 0))
    starts = offsets[safe] if len(offsets) > 1 else np.zeros(len(rows), dtype=np.int64)
    ends = offsets[safe + 1] if len(offsets) > 1 else starts
    lengths = np.where(rows >= 0, ends - starts, 0)
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    index = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return new_offsets, {key: arr[index] for key, arr in values.items()}


def concat_csr(
    first: tuple[np.ndarray, Mapping[str, np.ndarray]],
    second: tuple[np.ndarray, Mapping[str, np.ndarray]],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Stack two CSR layouts: rows of ``second`` follow those of ``first``."""
    off_a, val_a = first
    off_b, val_b = second
    offsets = np.concatenate([off_a, off_b[1:] + off_a[-1]])
    return offsets, {k: np.concatenate([val_a[k], val_b[k]]) for k in val_a}
