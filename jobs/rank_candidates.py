"""Rank a date's candidates with that date's ranker export (the top-N precompute's scores).

:func:`ranked_candidates` builds the candidate features of ``ds`` exactly as the examples
are built (:func:`jobs.ranker_features.add_features` over the gold tables of ``ds``) and
scores them in large batches: ``mapInArrow`` over user partitions (all of a user's rows in
one partition), the exported TorchScript model and its encoder loaded once per Python
worker (a small per-process cache keyed by the export's manifest, so a re-exported date is
reloaded). The new score fuses the ranker's order with the retrieval blend's order
(:func:`fuse`, weight :func:`fusion_weight`: the one training chose on its validation users,
or ``ranker.retrieval_weight`` when that is a number; 0 keeps the ranker's probability).
Without an export for ``ds`` the candidates come back unchanged (retrieval-only scores).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from conf import Settings
from jobs.lake import Lake
from jobs.spark_arrow import whole_users

if TYPE_CHECKING:
    from algorithms.ranker.artifact import Ranker

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def models_root(settings: Settings) -> Path:
    """Folder of the nightly ranker exports (``ranker.model_dir``, else
    ``<lake_root>/../models/ranker``).

    Raises:
        ValueError: ``lake_root`` is a URI and ``ranker.model_dir`` is not set.
    """
    if settings.ranker.model_dir:
        return Path(settings.resolve(settings.ranker.model_dir))
    root = settings.resolve(settings.lake_root)
    if "://" in root:
        raise ValueError(f"lake_root {root!r} is not a local folder: set ranker.model_dir to "
                         "a folder the Spark workers can read")
    return Path(root).parent / "models" / "ranker"


def export_dir(settings: Settings, ds: str) -> Path:
    """Where the ranker of ``ds`` is exported."""
    return models_root(settings) / ds


def has_export(settings: Settings, ds: str) -> bool:
    """Whether a complete export (its manifest is written last) exists for ``ds``."""
    return (export_dir(settings, ds) / MANIFEST).is_file()


@functools.lru_cache(maxsize=2)
def _cached_ranker(path: str, manifest_sha: str) -> Ranker:
    from algorithms.ranker.artifact import load_ranker

    log.info("loading the ranker %s (manifest %s)", path, manifest_sha[:12])
    return load_ranker(Path(path), verify=False)


def load_cached(path: Path) -> Ranker:
    """The export at ``path``, loaded once per process and manifest version."""
    sha = hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()
    return _cached_ranker(str(path), sha)


def user_rank_scores(users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each row's rank within its user, normalised: ``1 - position / n_user`` (1 for the
    best row; ties broken by item id), float64 (R,)."""
    out = np.zeros(len(scores))
    if len(scores) == 0:
        return out
    order = np.lexsort((items, -np.asarray(scores, np.float64), users))
    u = users[order]
    starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(u)])
    position = np.arange(len(u)) - np.repeat(starts, sizes)
    out[order] = 1.0 - position / np.repeat(sizes, sizes)
    return out


def fuse(users: np.ndarray, items: np.ndarray, model: np.ndarray, retrieval: np.ndarray,
         weight: float) -> np.ndarray:
    """The final score of R candidate rows (every row of each user present).

    Args:
        users, items: (R,) ids.
        model: (R,) the ranker's probabilities.
        retrieval: (R,) the retrieval blend.
        weight: weight of the retrieval order, in [0, 1].

    Returns:
        float64 (R,): ``model`` itself when ``weight`` is 0, else
        ``(1 - weight) * r(model) + weight * r(retrieval)`` with ``r`` of
        :func:`user_rank_scores`.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the retrieval weight must be in [0, 1], got {weight}")
    if weight == 0.0:
        return np.asarray(model, np.float64)
    return ((1.0 - weight) * user_rank_scores(users, items, model)
            + weight * user_rank_scores(users, items, retrieval))


def score_batches(batches, path: str, columns: list[str], batch_size: int, threads: int,
                  weight: float):
    """``mapInArrow`` body over one partition holding all rows of its users, sorted by
    ``(user_id, item_id)``: featured candidate rows in, the candidate ``columns`` out with
    ``score`` replaced (float64). Streams: one batch of whole users at a time."""
    import torch

    torch.set_num_threads(threads)
    ranker = load_cached(Path(path))
    # A row's score must not depend on the shuffle's delivery order (a matrix product's
    # last bits follow the batch's shape): Spark sorts each partition by (user, item), so
    # the batches, and the scores, are the same on a rerun.
    for batch in whole_users(batches):
        table = pa.Table.from_batches([batch])
        probs = ranker.score_table(table, batch_size)
        users = np.asarray(table.column("user_id").to_pylist(), dtype=object)
        items = np.asarray(table.column("item_id").to_pylist(), dtype=object)
        retrieval = table.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
        final = fuse(users, items, probs, retrieval, weight)
        arrays = [pa.array(final, pa.float64()) if name == "score"
                  else table.column(name).combine_chunks() for name in columns]
        yield from pa.Table.from_arrays(arrays, names=columns).to_batches()


def fusion_weight(settings: Settings, manifest: dict) -> float:
    """The retrieval weight of :func:`fuse` for an export: ``ranker.retrieval_weight`` when
    it is a number, else the one its training picked on validation users (manifest metric
    ``valid_retrieval_weight``).

    Raises:
        training.errors.ArtifactError: ``validation`` is asked for and the export has none.
    """
    from conf.errors import ArtifactError

    configured = settings.ranker.retrieval_weight
    if configured != "validation":
        return float(configured)
    chosen = manifest.get("metrics", {}).get(WEIGHT_METRIC)
    if chosen is None or not 0.0 <= chosen <= 1.0:
        raise ArtifactError(f"the ranker export has no valid {WEIGHT_METRIC} metric (got "
                            f"{chosen!r}): retrain it, or set ranker.retrieval_weight to a "
                            "number")
    return float(chosen)


WEIGHT_METRIC = "valid_retrieval_weight"
"""Manifest metric: the fusion weight training chose on its validation users."""


def score_featured(featured: DataFrame, export: Path, schema: StructType, settings: Settings,
                   weight: float | None = None) -> DataFrame:
    """Score featured candidates with the export at ``export``.

    Args:
        featured: candidate rows with the features of :func:`jobs.ranker_features.add_features`.
        export: an export directory (read by every Spark task: a shared or local path).
        schema: the output schema, the candidates' own (``score`` is replaced).
        settings: ``spark.shuffle_partitions`` and the ranker's batch size and threads.
        weight: the fusion weight (default: :func:`fusion_weight` of the export).

    Returns:
        ``schema``'s columns, ``score`` the fused score (:func:`fuse`).
    """
    columns = [f.name for f in schema.fields]
    size, threads, where = settings.ranker.eval_batch_size, settings.ranker.score_threads, \
        str(export)
    if weight is None:
        from algorithms.ranker.artifact import read_manifest

        weight = fusion_weight(settings, read_manifest(export, verify=False))

    def body(batches):
        yield from score_batches(batches, where, columns, size, threads, weight)

    return (featured.repartition(max(1, settings.spark.shuffle_partitions), "user_id")
            .sortWithinPartitions("user_id", "item_id").mapInArrow(body, schema))


def scoring_inputs(spark: SparkSession, candidates: DataFrame, settings: Settings, ds: str
                   ) -> tuple[DataFrame, Path, float] | None:
    """``(featured candidates, export folder, fusion weight)`` for scoring the candidates of
    ``ds`` with the ranker of ``ds``; None when ``ds`` has no export.

    Raises:
        training.errors.ArtifactError: the export is incomplete or altered.
    """
    from algorithms.ranker.artifact import read_manifest
    from jobs.ranker_features import add_features, feature_inputs

    path = export_dir(settings, ds)
    if not has_export(settings, ds):
        log.info("no ranker export at %s: candidates keep their retrieval scores", path)
        return None
    manifest = read_manifest(path, verify=True)
    weight = fusion_weight(settings, manifest)
    log.info("ranking the candidates of %s with %s (%s, valid AUC %.4f, retrieval weight %g)",
             ds, path, manifest.get("architecture"),
             manifest.get("metrics", {}).get("valid_auc", 0.0), weight)
    featured = add_features(candidates, feature_inputs(spark, Lake(settings), settings, ds))
    return featured, path, weight


def ranked_candidates(spark: SparkSession, candidates: DataFrame, settings: Settings,
                      ds: str) -> DataFrame:
    """The candidates of ``ds`` scored by the ranker of ``ds``, if there is one.

    Args:
        spark: the session.
        candidates: ``gold/candidates`` rows of ``ds`` (any subset of users).
        settings: root settings (``ranker`` section, lake, training window).
        ds: the logical date; the export ``export_dir(settings, ds)`` and the gold tables
            of ``ds`` are used.

    Returns:
        Exactly ``candidates``' columns, ``score`` replaced by the fused score in (0, 1]
        (the ranker's probability when the fusion weight is 0; ``rank`` stays
        the retrieval rank); ``candidates`` itself when ``ds`` has no export.

    Raises:
        training.errors.ArtifactError: the export is incomplete or altered.
    """
    inputs = scoring_inputs(spark, candidates, settings, ds)
    if inputs is None:
        return candidates
    featured, path, weight = inputs
    return score_featured(featured, path, candidates.schema, settings, weight)
