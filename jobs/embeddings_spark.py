"""The Spark MLlib backend of ``recpipe embeddings`` (``als.backend: spark``).

Same contract as the ``implicit`` backend (:mod:`jobs.embeddings`): string ids are numbered
in sorted order, ``pyspark.ml.recommendation.ALS`` fits with ``implicitPrefs=True`` (weight
``1 + alpha * confidence``), and the factors are written with their string ids to
``gold/user_embeddings`` and ``gold/item_embeddings``. Everything stays distributed and in
the JVM: ids are numbered over the sorted distinct ids without passing through the driver.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from conf import ConfigError, Settings
from conf.errors import EmptyInput, FactorizationError
from conf.pipeline import AlsSettings
from jobs.als_fit import spark_reg_param
from jobs.embeddings import model_version, resolve_seed
from jobs.lake import Lake
from jobs.tables import ITEM_EMBEDDINGS, TRAINING_MATRIX, USER_EMBEDDINGS

log = logging.getLogger(__name__)

MAX_ALS_ID = 2**31 - 1
"""MLlib ALS takes int ids: at most this many distinct users (items)."""


def index_ids(df: DataFrame, column: str) -> DataFrame:
    """Number the distinct values of ``column`` 0, 1, ... in sorted order, in the JVM.

    The sorted distinct ids are cached; a small job counts the rows of each sorted partition,
    and a value's number is its partition's offset plus its position inside the partition
    (the low 33 bits of ``monotonically_increasing_id``). No id reaches the driver or Python.

    Returns:
        ``<column>`` (string), ``idx`` (int), one row per distinct value; cached (the caller
        unpersists it).

    Raises:
        ValueError: more than :data:`MAX_ALS_ID` distinct values.
    """
    ids = (df.select(column).distinct().orderBy(column)
           .select(column, F.spark_partition_id().alias("_part"),
                   F.monotonically_increasing_id().bitwiseAND((1 << 33) - 1).alias("_pos"))
           .cache())
    counts = dict(ids.groupBy("_part").count().collect())
    n_parts = max(counts, default=-1) + 1
    offsets = np.cumsum([0] + [counts.get(p, 0) for p in range(n_parts)])
    if offsets[-1] > MAX_ALS_ID:
        ids.unpersist()
        raise ValueError(f"{column}: {offsets[-1]} distinct ids exceed MLlib ALS's int range")
    offset = F.array(*[F.lit(int(o)) for o in offsets[:-1]])[F.col("_part")] if n_parts else 0
    out = ids.select(column, (offset + F.col("_pos")).cast("int").alias("idx")).cache()
    out.count()
    ids.unpersist()
    return out


def check_input(matrix: DataFrame) -> int:
    """Check ``user_id, item_id, confidence`` rows and return their count.

    Raises:
        EmptyInput: no rows.
        ValueError: a null id or confidence, a NaN, infinite or negative confidence, or a
            (user, item) pair stored twice (the message gives the counts).
    """
    conf = F.col("confidence")
    bad = (F.col("user_id").isNull() | F.col("item_id").isNull() | conf.isNull()
           | F.isnan(conf) | (F.abs(conf) == float("inf")) | (conf < 0))
    stats = matrix.agg(F.count(F.lit(1)).alias("rows"),
                       F.sum(bad.cast("long")).alias("bad"),
                       F.count_distinct("user_id", "item_id").alias("pairs")).collect()[0]
    if stats["rows"] == 0:
        raise EmptyInput("no (user, item, confidence) rows to factorise")
    if stats["bad"]:
        raise ValueError(f"{stats['bad']} row(s) have a null id or a confidence that is null, "
                         "NaN, infinite or negative")
    if stats["pairs"] != stats["rows"]:
        raise ValueError(f"{stats['rows'] - stats['pairs']} duplicate (user, item) row(s)")
    return int(stats["rows"])


def checkpoint_root(settings: Settings) -> str:
    """The folder under which Spark ALS fits checkpoint: ``als.spark_checkpoint_dir``, else
    ``<work_dir>/checkpoints``, resolved.

    Raises:
        ConfigError: a non-local Spark master with a folder on the driver's local disk, which
            the executors on other hosts could not read back.
    """
    als = settings.als
    key = "als.spark_checkpoint_dir" if als.spark_checkpoint_dir else "work_dir"
    root = (settings.resolve(als.spark_checkpoint_dir) if als.spark_checkpoint_dir
            else settings.resolve(settings.work_dir).rstrip("/") + "/checkpoints")
    local_disk = "://" not in root or root.startswith("file:")
    if local_disk and not settings.spark.master.startswith("local"):
        raise ConfigError(
            f"{key}: Spark ALS checkpoints at {root} would land on the driver's local disk, "
            f"which executors of spark.master={settings.spark.master!r} cannot read; set it "
            "to shared storage (s3a://..., hdfs://...)")
    return root


@contextmanager
def checkpoint_folder(spark: SparkSession, root: str, label: str) -> Iterator[str]:
    """A fresh checkpoint folder under ``root`` for one fit, removed when the block ends.

    The folder is named ``<label>-<random>`` so concurrent fits (a backfill's dates) never
    share one, and is deleted through Hadoop's FileSystem API, the same for a local folder
    and an object store. Spark's context keeps pointing at it afterwards, unused.
    """
    folder = f"{root.rstrip('/')}/{label}-{uuid.uuid4().hex[:12]}"
    spark.sparkContext.setCheckpointDir(folder)
    try:
        yield folder
    finally:
        jvm = spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(folder)
        path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def fit_als(ratings: DataFrame, als: AlsSettings, seed: int,
            checkpoint_dir: str | None = None) -> ALSModel:
    """Fit MLlib implicit-feedback ALS.

    Without checkpoints the lineage of the factor RDDs grows by one step per iteration and a
    long fit dies with ``StackOverflowError`` while a task is deserialized: pass a folder
    (see :func:`checkpoint_folder`) for any fit of more than a few iterations.

    Args:
        ratings: ``user_idx`` (int), ``item_idx`` (int), ``confidence`` (non-negative).
        als: rank (``factors``), ``iterations``, ``alpha``, ``regParam`` (see
            :func:`~jobs.embeddings.spark_reg_param`), blocks, checkpoint interval.
        seed: seed of the random initial factors.
        checkpoint_dir: the session's checkpoint folder (already set on its context), or None
            for no checkpoints.

    Returns:
        The fitted model; ``userFactors`` and ``itemFactors`` are ``id`` (int),
        ``features`` (array<float>, length F). Materialize them before the checkpoint folder
        is removed.
    """
    estimator = ALS(
        rank=als.factors, maxIter=als.iterations, regParam=spark_reg_param(als),
        implicitPrefs=True, alpha=als.alpha, nonnegative=False, seed=seed,
        numUserBlocks=als.spark_blocks, numItemBlocks=als.spark_blocks,
        checkpointInterval=als.spark_checkpoint_interval if checkpoint_dir else -1,
        userCol="user_idx", itemCol="item_idx", ratingCol="confidence",
    )
    return estimator.fit(ratings)


def check_factor_frame(factors: DataFrame, what: str) -> None:
    """Refuse a factor DataFrame (``features`` array column) with NaN, infinite or only zeros.

    Raises:
        FactorizationError: naming ``what`` and the problem.
    """
    bad = F.exists("features", lambda x: F.isnan(x) | (F.abs(x) == float("inf")))
    peak = F.array_max(F.transform("features", lambda x: F.abs(x)))
    stats = factors.agg(F.sum(bad.cast("long")).alias("bad"), F.max(peak).alias("peak"),
                        F.count(F.lit(1)).alias("rows")).collect()[0]
    if stats["bad"]:
        raise FactorizationError(f"{what}: {stats['bad']} vector(s) hold NaN or infinite values")
    if stats["rows"] and not stats["peak"]:
        raise FactorizationError(f"{what} are all zero")


def attach_ids(factors: DataFrame, index: DataFrame, column: str, version: str,
               ds: str) -> DataFrame:
    """Factor rows (``id`` int, ``features``) -> contract rows (``id`` string, ``vector``, ...)."""
    return (factors.join(index, factors["id"] == index["idx"])
            .select(F.col(column).alias("id"),
                    F.col("features").cast("array<float>").alias("vector"),
                    F.lit(version).alias("model_version"), F.lit(ds).alias("ds")))


def embed(matrix: DataFrame, als: AlsSettings, seed: int, version: str, ds: str,
          checkpoint_dir: str | None = None) -> tuple[DataFrame, DataFrame, dict]:
    """Training-matrix rows -> user and item embedding rows (the pure part of the job).

    Args:
        matrix: ``user_id``, ``item_id``, ``confidence`` (one row per pair).
        als: the ALS settings.
        seed: resolved seed.
        version: model version for every row.
        ds: partition value.
        checkpoint_dir: resolved checkpoint folder or None.

    Returns:
        ``(users, items, figures)``: two DataFrames with the embeddings contract (cached;
        the caller unpersists), and ``nnz``, ``users``, ``items``, ``fit_s``.

    Raises:
        EmptyInput, ValueError: see :func:`check_input`.
        FactorizationError: the factors hold NaN, infinite values or only zeros.
    """
    matrix = matrix.select("user_id", "item_id", "confidence").cache()
    try:
        nnz = check_input(matrix)
        user_index = index_ids(matrix, "user_id")
        item_index = index_ids(matrix, "item_id")
        ratings = (matrix
                   .join(user_index.withColumnRenamed("idx", "user_idx"), "user_id")
                   .join(item_index.withColumnRenamed("idx", "item_idx"), "item_id")
                   .select("user_idx", "item_idx", F.col("confidence").cast("float"))
                   .cache())
        ratings.count()
        began = time.perf_counter()
        model = fit_als(ratings, als, seed, checkpoint_dir)
        fit_s = time.perf_counter() - began
        check_factor_frame(model.userFactors, "user factors")
        check_factor_frame(model.itemFactors, "item factors")
        users = attach_ids(model.userFactors, user_index, "user_id", version, ds).cache()
        items = attach_ids(model.itemFactors, item_index, "item_id", version, ds).cache()
        figures = {"nnz": nnz, "users": users.count(), "items": items.count(),
                   "fit_s": round(fit_s, 3)}
        ratings.unpersist()
        user_index.unpersist()
        item_index.unpersist()
    finally:
        matrix.unpersist()
    return users, items, figures


def run_spark(spark: SparkSession, settings: Settings, ds: str) -> dict:
    """Fit MLlib ALS on ``gold/training_matrix/ds=<ds>`` and overwrite both embedding tables.

    Returns:
        ``ds``, ``backend``, ``model_version``, ``users``, ``items``, ``nnz``, ``factors``,
        ``fit_s`` and the Delta versions written.
    """
    lake = Lake(settings)
    als, seed = settings.als, resolve_seed(settings.als, settings.seed)
    version = model_version(ds, als, seed)
    root = checkpoint_root(settings)
    matrix = lake.read_spark(spark, TRAINING_MATRIX.name, [ds])
    # the vectors are written before the checkpoints go: a cached block that was dropped
    # would be recomputed from them
    with checkpoint_folder(spark, root, f"als-{ds}") as checkpoint:
        try:
            users, items, figures = embed(matrix, als, seed, version, ds, checkpoint)
        except EmptyInput:
            raise EmptyInput(f"{TRAINING_MATRIX.name}: no rows for ds={ds}") from None
        try:
            written = {
                USER_EMBEDDINGS.name: lake.write_spark(USER_EMBEDDINGS.name, users, [ds]),
                ITEM_EMBEDDINGS.name: lake.write_spark(ITEM_EMBEDDINGS.name, items, [ds])}
        finally:
            users.unpersist()
            items.unpersist()
    log.info("MLlib ALS %s on %d users x %d items (%d nnz): %.1f s", version,
             figures["users"], figures["items"], figures["nnz"], figures["fit_s"])
    return {"ds": ds, "backend": "spark", "model_version": version, **figures,
            "factors": als.factors, "versions": written}
