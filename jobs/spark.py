"""The Spark session factory: every job gets its session here, configured from settings."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

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
