"""``recpipe bench als``: seconds per ALS iteration, ``implicit`` beside Spark MLlib.

Both backends of ``recpipe embeddings`` fit the same matrix with the same settings in one run,
through the job's own fit functions (:func:`jobs.embeddings.fit_implicit`,
:func:`jobs.embeddings_spark.fit_als`):

- ``ml-1m``: ``train.txt`` of the shared binarized MovieLens 1M (590,733 interactions);
- ``ml-100k``: MovieLens 100K from the RecBole wheel (every rating counts as an interaction).

Every interaction has confidence 1. The input is prepared before the clock starts (a CSR
matrix for ``implicit``; a cached, counted DataFrame for Spark), and each backend first runs
an untimed one-iteration fit (JIT and thread-pool warm-up; ``--no-warmup`` skips it). A
figure is the wall time of one whole fit divided by its iterations, so Spark's fixed cost per
fit (partitioning the ratings into blocks) is spread over the iterations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from conf.errors import InputDataError, UsageError
from conf.pipeline import AlsSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
"""The shared folder beside the checkout (holds ``data/ml-1m``)."""
DATASETS = ("ml-1m", "ml-100k")


def interaction_matrix(users: np.ndarray, items: np.ndarray) -> sp.csr_matrix:
    """Binary (U, I) float32 CSR of the distinct (user, item) pairs, ids numbered in order.

    Args:
        users: int (N,) user ids.
        items: int (N,) item ids, aligned.

    Raises:
        ValueError: the arrays differ in shape or are empty.
    """
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1 or users.size == 0:
        raise ValueError(f"users and items must be aligned non-empty 1-D arrays, got "
                         f"{users.shape} and {items.shape}")
    _, rows = np.unique(users, return_inverse=True)
    _, cols = np.unique(items, return_inverse=True)
    matrix = sp.csr_matrix((np.ones(users.size, np.float32), (rows, cols)),
                           shape=(int(rows.max()) + 1, int(cols.max()) + 1))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def load_dataset(name: str, data: Path | None, cache_dir: Path) -> tuple[sp.csr_matrix, str]:
    """The benchmark matrix of dataset ``name`` and a description of its source.

    Args:
        name: ``ml-1m`` or ``ml-100k``.
        data: folder holding ``train.txt`` (ml-1m) or ``ml-100k.inter`` (ml-100k); None for
            the default (the shared folder for ml-1m, the RecBole wheel in ``cache_dir`` for
            ml-100k).
        cache_dir: download cache for ml-100k.

    Raises:
        InputDataError: the expected file is missing (the message names it).
        UsageError: unknown ``name``.
    """
    if name == "ml-1m":
        from jobs.datasets.fixed_split import read_fixed_split

        path = (data or SHARED / "data" / "ml-1m") / "train.txt"
        if not path.is_file():
            raise InputDataError(f"ml-1m: {path} not found (pass --data FOLDER)")
        return interaction_matrix(*read_fixed_split(path)), str(path)
    if name == "ml-100k":
        if data is None:
            from jobs.datasets.movielens import fetch_movielens_100k

            data = fetch_movielens_100k(cache_dir)
        path = data / "ml-100k.inter"
        if not path.is_file():
            raise InputDataError(f"ml-100k: {path} not found")
        pairs = np.loadtxt(path, skiprows=1, usecols=(0, 1), dtype=np.int64)
        return interaction_matrix(pairs[:, 0], pairs[:, 1]), str(path)
    raise UsageError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def time_implicit(matrix: sp.csr_matrix, als: AlsSettings, seed: int, warmup: bool) -> float:
    """Wall seconds of one ``implicit`` fit of ``matrix`` (after an optional warm-up fit)."""
    from jobs.als_fit import fit_implicit

    if warmup:
        fit_implicit(matrix, als.model_copy(update={"iterations": 1}), seed)
    began = time.perf_counter()
    fit_implicit(matrix, als, seed)
    return time.perf_counter() - began


def time_spark(spark: SparkSession, matrix: sp.csr_matrix, als: AlsSettings, seed: int,
               warmup: bool, checkpoint_root: str | None) -> float:
    """Wall seconds of one MLlib fit of ``matrix`` (ratings cached beforehand), until both
    factor matrices are materialized.

    Args:
        checkpoint_root: folder under which the fits checkpoint every
            ``als.spark_checkpoint_interval`` iterations, as the job's do; None for none (a
            long fit then overflows the JVM's stack).
    """
    import pandas as pd

    from jobs.embeddings_spark import checkpoint_folder, fit_als

    coo = matrix.tocoo()
    frame = pd.DataFrame({"user_idx": coo.row.astype(np.int32),
                          "item_idx": coo.col.astype(np.int32),
                          "confidence": coo.data.astype(np.float32)})
    ratings = spark.createDataFrame(frame).repartition(als.spark_blocks).cache()
    try:
        ratings.count()
        if warmup:
            fit_als(ratings, als.model_copy(update={"iterations": 1}), seed)
        with ExitStack() as stack:
            folder = (stack.enter_context(checkpoint_folder(spark, checkpoint_root, "bench-als"))
                      if checkpoint_root else None)
            began = time.perf_counter()
            model = fit_als(ratings, als, seed, folder)
            model.userFactors.count()
            model.itemFactors.count()
            return time.perf_counter() - began
    finally:
        ratings.unpersist()


def compare(matrix: sp.csr_matrix, als: AlsSettings, seed: int, spark: SparkSession,
            warmup: bool = True, checkpoint_root: str | None = None) -> dict[str, object]:
    """Time both backends on ``matrix`` with the same settings.

    Args:
        checkpoint_root: where Spark's fit checkpoints (see :func:`time_spark`).

    Returns:
        ``implicit_s_per_iter``, ``spark_s_per_iter``, ``speedup`` (Spark's figure over
        implicit's), the whole-fit seconds and the sizes and threads used.
    """
    implicit_s = time_implicit(matrix, als, seed, warmup)
    logger.info("implicit: %d iterations in %.1f s; now Spark MLlib", als.iterations, implicit_s)
    spark_s = time_spark(spark, matrix, als, seed, warmup, checkpoint_root)
    logger.info("Spark MLlib: %d iterations in %.1f s", als.iterations, spark_s)
    per_iter_i, per_iter_s = implicit_s / als.iterations, spark_s / als.iterations
    return {
        "users": int(matrix.shape[0]), "items": int(matrix.shape[1]), "nnz": int(matrix.nnz),
        "factors": als.factors, "iterations": als.iterations, "seed": seed,
        "implicit_s_per_iter": round(per_iter_i, 4), "spark_s_per_iter": round(per_iter_s, 4),
        "speedup": round(per_iter_s / per_iter_i, 2),
        "implicit_fit_s": round(implicit_s, 2), "spark_fit_s": round(spark_s, 2),
        "implicit_threads": als.num_threads or len(os.sched_getaffinity(0)),
        "spark_master": spark.sparkContext.master,
        "spark_parallelism": spark.sparkContext.defaultParallelism,
        "spark_blocks": als.spark_blocks, "warmup": warmup,
        "spark_checkpoint_interval": als.spark_checkpoint_interval if checkpoint_root else 0,
    }


def _count(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text}")
    return value


def _positive(text: str) -> int:
    return _count(text, 1)


def _non_negative(text: str) -> int:
    return _count(text, 0)


def main(argv: list[str]) -> int:
    """``recpipe bench als --dataset ml-1m|ml-100k [--factors] [--iterations] [--json OUT]``."""
    from conf import load_settings

    parser = argparse.ArgumentParser(prog="recpipe bench als", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default="ml-1m")
    parser.add_argument("--data", type=Path,
                        help="folder with the dataset's files (default: ../shared/data/ml-1m "
                             "for ml-1m, the downloaded RecBole wheel for ml-100k)")
    parser.add_argument("--factors", type=_positive, help="override als.factors")
    parser.add_argument("--iterations", type=_positive, help="override als.iterations")
    parser.add_argument("--checkpoint-interval", type=_non_negative,
                        help="override als.spark_checkpoint_interval; 0: no checkpoints (a "
                             "long Spark fit then overflows the JVM's stack)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the untimed one-iteration fit of each backend")
    parser.add_argument("--env", help="config profile (default: RECPIPE_ENV or local)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true",
                        help="MovieLens 100K, 8 factors, 3 iterations (for a test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.factors, args.iterations = "ml-100k", 8, 3
    als = {k: v for k, v in (("factors", args.factors), ("iterations", args.iterations),
                             ("spark_checkpoint_interval", args.checkpoint_interval or None))
           if v is not None}
    settings = load_settings(env=args.env, overrides={"als": als} if als else None)
    matrix, source = load_dataset(args.dataset, args.data, settings.data_path("cache"))
    from jobs.embeddings import resolve_seed
    from jobs.embeddings_spark import checkpoint_root
    from jobs.spark import get_spark

    root = None if args.checkpoint_interval == 0 else checkpoint_root(settings)
    seed = resolve_seed(settings.als, settings.seed)
    figures = compare(matrix, settings.als, seed, get_spark(settings), not args.no_warmup, root)
    result = {"dataset": args.dataset, "source": source, **figures}
    print(f"{args.dataset}: {figures['users']} users x {figures['items']} items, "
          f"{figures['nnz']} interactions, {figures['factors']} factors, "
          f"{figures['iterations']} iterations")
    print(f"  implicit    : {figures['implicit_s_per_iter']:8.3f} s/iter  (fit "
          f"{figures['implicit_fit_s']:.1f} s, {figures['implicit_threads']} threads)")
    print(f"  Spark MLlib : {figures['spark_s_per_iter']:8.3f} s/iter  (fit "
          f"{figures['spark_fit_s']:.1f} s, {figures['spark_master']}, "
          f"{figures['spark_blocks']} blocks, checkpoint every "
          f"{figures['spark_checkpoint_interval'] or '-'} iterations)")
    print(f"  speedup     : {figures['speedup']:.1f}x (implicit over Spark)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
