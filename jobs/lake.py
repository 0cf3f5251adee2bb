"""Read and write lake tables (Delta) by name and partition.

The default engine is delta-rs (``deltalake``): Arrow data in, Delta commits out. Spark reads
a table through the current snapshot's file list (never by listing the folder, which would
also read files Delta has removed). ``lake.engine: delta-spark`` routes both through Spark's
Delta data source on clusters that have the Delta jars.

Idempotency: ``overwrite_partitions`` replaces exactly the named partitions in one commit;
``append`` with a ``batch_id`` records a Delta application transaction, so appending the
same batch again is a no-op.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from conf import Settings
from conf.errors import SchemaMismatch
from jobs.tables import TableSpec, spec_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def conform(table: pa.Table, spec: TableSpec) -> pa.Table:
    """Return ``table`` with exactly ``spec``'s columns, order and types.

    Raises:
        SchemaMismatch: a column is missing or extra, a non-nullable column holds nulls, or a
            column cannot be cast safely. The message names the table and the column.
    """
    want = spec.schema
    missing = [f.name for f in want if f.name not in table.column_names]
    extra = [c for c in table.column_names if want.get_field_index(c) < 0]
    if missing or extra:
        raise SchemaMismatch(
            f"{spec.name}: columns do not match the declared schema "
            f"(missing {missing}, unexpected {extra})"
        )
    arrays = []
    for field in want:
        col = table.column(field.name)
        if not field.nullable and col.null_count:
            raise SchemaMismatch(f"{spec.name}.{field.name}: {col.null_count} null(s) in a "
                                 "non-nullable column")
        if col.type != field.type:
            try:
                col = col.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatch(
                    f"{spec.name}.{field.name}: cannot store {col.type} as {field.type}: {exc}"
                ) from exc
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=want)


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def partition_predicate(column: str, values: Iterable[str]) -> str:
    """SQL predicate selecting ``column IN values`` for a Delta overwrite."""
    vals = sorted(set(values))
    if len(vals) == 1:
        return f"{column} = {_quote(vals[0])}"
    return f"{column} IN ({', '.join(_quote(v) for v in vals)})"


def delta_dataset(dt: DeltaTable, filters: list | None = None) -> pads.Dataset:
    """An Arrow dataset over the files of ``dt``'s snapshot (optionally pruned by partition
    ``filters``, as for ``DeltaTable.file_uris``), partition columns filled from the
    files' hive-style folders.

    Local tables are read with pyarrow's own dataset over the snapshot's file list:
    ``DeltaTable.to_pyarrow_dataset`` with partition filters leaves scanner threads that
    abort the process at interpreter exit ("terminate called without an active exception",
    delta-rs/polars issue 24169), which turns a finished task into a failed one. Object-store
    tables (credentials live in delta-rs's storage options) still go through delta-rs.
    """
    uri = dt.table_uri
    if "://" in uri and not uri.startswith("file://"):
        return dt.to_pyarrow_dataset(partitions=filters)
    schema = pa.schema(dt.schema().to_arrow())
    columns = dt.metadata().partition_columns
    root = uri.removeprefix("file://")
    partitioning = pads.partitioning(pa.schema([schema.field(c) for c in columns]),
                                     flavor="hive") if columns else None
    return pads.dataset(dt.file_uris(partition_filters=filters), schema=schema,
                        format="parquet", partitioning=partitioning, partition_base_dir=root)


class Lake:
    """The lake under ``settings.lake_root``: tables by name, partitions by value."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage_options = dict(settings.lake.storage_options) or None

    # -- paths and metadata -------------------------------------------------------------
    def path(self, name: str) -> str:
        """Location of table ``name`` (a local folder or an object-store URI)."""
        return self.settings.lake_path(*name.split("/"))

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.path(name), storage_options=self.storage_options)

    def table(self, name: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.path(name), version=version, storage_options=self.storage_options)

    def version(self, name: str) -> int | None:
        """Current Delta version of ``name``, or ``None`` if it does not exist yet."""
        return self.table(name).version() if self.exists(name) else None

    def partitions(self, name: str) -> list[str]:
        """Sorted values of the table's first partition column (empty if none or missing)."""
        spec = spec_for(name)
        if not spec.partition_by or not self.exists(name):
            return []
        col = spec.partition_by[0]
        return sorted({p[col] for p in self.table(name).partitions()})

    # -- writes -------------------------------------------------------------------------
    def overwrite_partitions(self, name: str, data: pa.Table | pa.RecordBatchReader,
                             values: Sequence[str] | None = None) -> int:
        """Replace the partitions ``values`` of ``name`` with ``data`` in one commit.

        ``values`` defaults to the partition values present in ``data`` (a table). Passing
        them explicitly also clears a partition for which ``data`` has no rows.

        Returns:
            The new Delta version.
        """
        spec = spec_for(name)
        if not spec.partition_by:
            raise ValueError(f"{name} is not partitioned; use replace()")
        col = spec.partition_by[0]
        if isinstance(data, pa.Table):
            data = conform(data, spec)
            if values is None:
                values = data.column(col).unique().to_pylist()
        if not values:
            raise ValueError(f"{name}: no partition values to overwrite")
        if self.settings.lake.engine == "delta-spark":
            return self._spark_write(name, data, "overwrite", partition_predicate(col, values))
        predicate = partition_predicate(col, values) if self.exists(name) else None
        write_deltalake(self.path(name), data, partition_by=list(spec.partition_by),
                        mode="overwrite", predicate=predicate,
                        storage_options=self.storage_options)
        return self.version(name)

    def replace(self, name: str, data: pa.Table) -> int:
        """Replace the whole (unpartitioned) table ``name``."""
        spec = spec_for(name)
        write_deltalake(self.path(name), conform(data, spec), mode="overwrite",
                        storage_options=self.storage_options)
        return self.version(name)

    def append(self, name: str, data: pa.Table, batch_id: str) -> bool:
        """Append ``data`` as batch ``batch_id`` unless that batch was appended before.

        Returns:
            True if rows were appended, False if the batch was already in the table.
        """
        spec = spec_for(name)
        app_id = f"recpipe:{batch_id}"
        if self.exists(name) and self.table(name).transaction_version(app_id) is not None:
            log.info("%s: batch %s already appended; nothing to do", name, batch_id)
            return False
        props = CommitProperties(app_transactions=[Transaction(app_id, 1)],
                                 custom_metadata={"recpipe.batch": batch_id})
        write_deltalake(self.path(name), conform(data, spec),
                        partition_by=list(spec.partition_by) or None, mode="append",
                        commit_properties=props, storage_options=self.storage_options)
        return True

    # -- reads --------------------------------------------------------------------------
    def _filters(self, name: str, partitions: Sequence[str] | None):
        spec = spec_for(name)
        if partitions is None:
            return None
        if not spec.partition_by:
            raise ValueError(f"{name} is not partitioned")
        return [(spec.partition_by[0], "in", list(partitions))]

    def read_arrow(self, name: str, partitions: Sequence[str] | None = None,
                   columns: Sequence[str] | None = None, version: int | None = None) -> pa.Table:
        """Rows of ``name`` (optionally only the given partitions) as an Arrow table."""
        spec = spec_for(name)
        if not self.exists(name):
            return spec.schema.empty_table().select(columns or spec.schema.names)
        dataset = delta_dataset(self.table(name, version), self._filters(name, partitions))
        return dataset.to_table(columns=list(columns) if columns else None)

    def dataset(self, name: str, partitions: Sequence[str] | None = None) -> pads.Dataset:
        """An Arrow dataset over ``name`` (optionally only the given partitions), to scan in
        batches or read with a row filter.

        Raises:
            FileNotFoundError: ``name`` has no table yet.
        """
        if not self.exists(name):
            raise FileNotFoundError(f"the lake has no table {name} at {self.path(name)}")
        return delta_dataset(self.table(name), self._filters(name, partitions))

    def read_spark(self, spark: SparkSession, name: str,
                   partitions: Sequence[str] | None = None, version: int | None = None
                   ) -> DataFrame:
        """``name`` as a Spark DataFrame read from the Delta snapshot's file list."""
        spec = spec_for(name)
        if self.settings.lake.engine == "delta-spark":
            reader = spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self.path(name))
            if partitions is not None:
                df = df.where(df[spec.partition_by[0]].isin(list(partitions)))
            return df
        from jobs.spark_arrow import arrow_schema_to_spark

        uris = []
        if self.exists(name):
            uris = self.table(name, version).file_uris(
                partition_filters=self._filters(name, partitions))
        if not uris:
            return spark.createDataFrame([], arrow_schema_to_spark(spec.schema))
        df = spark.read.option("basePath", self.path(name)).parquet(*uris)
        return df.select(*spec.schema.names)

    def write_spark(self, name: str, df: DataFrame, values: Sequence[str]) -> int:
        """Overwrite partitions ``values`` of ``name`` with a Spark DataFrame.

        Spark writes Parquet to a staging folder (in parallel, on the executors); the rows
        are then streamed into one Delta commit, so the driver never holds the whole table.
        """
        if self.settings.lake.engine == "delta-spark":
            col = spec_for(name).partition_by[0]
            return self._spark_write(name, df, "overwrite", partition_predicate(col, values))
        spec = spec_for(name)
        staging = Path(tempfile.mkdtemp(prefix="recpipe-stage-"))
        try:
            df.select(*spec.schema.names).write.mode("overwrite").parquet(str(staging / "d"))
            dataset = pads.dataset(str(staging / "d"), format="parquet")
            batches = (
                batch
                for raw in dataset.to_batches()
                if raw.num_rows
                for batch in conform(pa.Table.from_batches([raw]), spec).to_batches()
            )
            reader = pa.RecordBatchReader.from_batches(spec.schema, batches)
            return self.overwrite_partitions(name, reader, values)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _spark_write(self, name: str, data, mode: str, predicate: str) -> int:
        from pyspark.sql import DataFrame as SparkDF

        from jobs.spark import get_spark

        spark = get_spark(self.settings)
        df = data if isinstance(data, SparkDF) else spark.createDataFrame(
            data.read_all().to_pandas() if isinstance(data, pa.RecordBatchReader)
            else data.to_pandas())
        spec = spec_for(name)
        (df.write.format("delta").mode(mode).option("replaceWhere", predicate)
         .partitionBy(*spec.partition_by).save(self.path(name)))
        return int(spark.sql(f"DESCRIBE HISTORY delta.`{self.path(name)}` LIMIT 1")
                   .collect()[0]["version"])
