"""Ids kept in Arrow: one string array per id set, looked up by Arrow's hash kernels, so a
catalogue of millions of items never becomes millions of Python objects."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

IdsLike = Sequence[str] | pa.Array | pa.ChunkedArray


def id_array(ids: IdsLike) -> pa.Array:
    """``ids`` as one Arrow string array (Arrow input is cast, not copied into Python)."""
    if isinstance(ids, pa.ChunkedArray):
        return pc.cast(ids, pa.string()).combine_chunks()
    if isinstance(ids, pa.Array):
        return pc.cast(ids, pa.string())
    return pa.array([str(i) for i in ids], pa.string())


def rows_in(values: pa.Array, ids: IdsLike) -> np.ndarray:
    """(N,) int64 positions of ``ids`` in ``values`` (-1 where absent), looked up by Arrow."""
    found = pc.index_in(id_array(ids), value_set=values)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
