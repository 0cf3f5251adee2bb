"""The Spark session factory: every job gets its session here, configured from settings."""

from __future__ import annotations

import os
import sys

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from conf import Settings


def get_spark(settings: Settings) -> SparkSession:
    """Return the process's Spark session, creating it from ``settings.spark`` if needed.

    Local sessions bind to loopback (``SPARK_LOCAL_IP``), keep partition columns as strings
    and use UTC, so ``ds`` values and timestamps read the same on every machine.
    """
    cfg = settings.spark
    if cfg.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers must run this interpreter (the venv with numpy, pyarrow, faiss).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if cfg.master.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


SUM_DECIMALS = 12
"""Decimal places kept by :func:`exact_sum` (a weight's rounding error is below 1e-12)."""


def exact_sum(column: str | Column) -> Column:
    """The sum of a double column, the same whatever order Spark adds the rows in.

    A double sum depends on the order of its terms (the last bits differ from run to run as
    shuffles deliver rows in another order), which would break the rule that a rerun of a
    task gives the same table. Each value is rounded to :data:`SUM_DECIMALS` places and
    summed as a decimal, which is exact; the result is cast back to double.
    """
    col = F.col(column) if isinstance(column, str) else column
    return F.sum(col.cast(f"decimal(38,{SUM_DECIMALS})")).cast("double")
