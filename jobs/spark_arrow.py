"""Conversions between Arrow and Spark schemas (only the types our tables use), and the
regrouping of ``mapInArrow`` batches by key."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T


def arrow_type_to_spark(t: pa.DataType) -> T.DataType:
    """The Spark type that holds Arrow type ``t``."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return T.StringType()
    if pa.types.is_int64(t):
        return T.LongType()
    if pa.types.is_int32(t):
        return T.IntegerType()
    if pa.types.is_float64(t):
        return T.DoubleType()
    if pa.types.is_float32(t):
        return T.FloatType()
    if pa.types.is_boolean(t):
        return T.BooleanType()
    if pa.types.is_timestamp(t):
        return T.TimestampType()
    if pa.types.is_date(t):
        return T.DateType()
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return T.ArrayType(arrow_type_to_spark(t.value_type))
    if pa.types.is_map(t):
        return T.MapType(arrow_type_to_spark(t.key_type), arrow_type_to_spark(t.item_type))
    raise TypeError(f"no Spark type for Arrow type {t}")


def arrow_schema_to_spark(schema: pa.Schema) -> T.StructType:
    """Spark ``StructType`` with the same fields as ``schema``."""
    return T.StructType([T.StructField(f.name, arrow_type_to_spark(f.type), f.nullable)
                         for f in schema])


def whole_users(batches):
    """Arrow batches of rows sorted by ``user_id`` -> batches that never split a user's rows.

    The last user of each batch is held back and put in front of the next one, so memory
    stays at one batch (plus one user's rows) however large the partition is.
    """
    held = None
    for batch in batches:
        if held is not None and held.num_rows:
            batch = pa.Table.from_batches([held, batch]).combine_chunks().to_batches()[0]
        if batch.num_rows == 0:
            continue
        users = batch.column("user_id")
        last = users[batch.num_rows - 1]
        tail = int(pc.sum(pc.equal(users, last)).as_py())
        cut = batch.num_rows - tail
        if cut:
            yield batch.slice(0, cut)
        held = batch.slice(cut)
    if held is not None and held.num_rows:
        yield held
