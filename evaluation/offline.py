"""``recpipe evaluate``: offline evaluation of the model version of a date -> ``gold/evaluation``.

Shapes: U evaluated users, I indexed items, K = ``max(offline_eval.ks)`` list length.

Every stage is scored on the temporal holdout of ``ds`` (:mod:`evaluation.holdout`), at
every cutoff of ``offline_eval.ks`` and in every slice, with :mod:`evaluation.metrics`:

- ``model``: the embedding model (exact top-K by inner product, training items excluded;
  users without a vector get the popularity list, as the service serves them), the thing
  the gate compares across versions;
- ``popularity``: the baseline, items by number of training users (training items excluded);
- ``strategy/<name>``: each retrieval strategy's candidates, by its own score;
- ``merged``: the merged candidates, by their blended rank;
- ``topn/<surface>``: the final precomputed lists, by rank.

Stages whose table has no partition for ``ds`` are skipped with a warning. The rows go to
``gold/evaluation/ds=`` (the gate's rows of an earlier run are dropped: a new evaluation
calls for a new verdict); the model version gets an MLflow run (params, metrics, the HTML
report as an artifact) and is registered as ``mlflow.embeddings_model``, tagged with the
Delta versions it was built from.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from algorithms.window import dates_between, holdout_window
from conf import Settings
from conf.errors import EmptyInput
from conf.gate import EvalSections, eval_sections, parse_metric
from evaluation.holdout import (
    SLICES,
    Holdout,
    build_holdout,
    positive_events,
    sample_users,
)
from evaluation.ids import id_array
from evaluation.metrics import (
    RANKING_METRICS,
    catalogue_coverage,
    hit_gains,
    ranking_metrics_per_user,
)
from evaluation.metrics_input import check_recs, nan_mean
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import (
    CANDIDATES,
    EVALUATION,
    ITEM_EMBEDDINGS,
    SILVER_INTERACTIONS,
    SILVER_ITEMS,
    TOPN,
    TRAINING_MATRIX,
    USER_EMBEDDINGS,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from evaluation.embedding_model import EmbeddingModel

from evaluation.stage_lists import (
    GATE_PREFIX,
    MODEL,
    POPULARITY,
    read_partition,
    read_stage_tables,
    stage_lists,
)

log = logging.getLogger(__name__)
LINEAGE_TABLES = (SILVER_INTERACTIONS.name, SILVER_ITEMS.name, TRAINING_MATRIX.name,
                  USER_EMBEDDINGS.name, ITEM_EMBEDDINGS.name, CANDIDATES.name, TOPN.name)


# -- reading --------------------------------------------------------------------------------
@dataclass
class Inputs:
    """What the evaluation of a date reads from the lake.

    Attributes:
        window: first and last event dates of the holdout.
        events: holdout interactions (``user_id, item_id, event_type, value``).
        train: training rows of the model (``user_id, item_id``).
        catalogue: item ids of the latest ``silver/items`` snapshot at or before ``ds``.
        lineage: Delta version of each table read (``None`` when missing).
    """

    window: tuple[str, str]
    events: pa.Table
    train: pa.Table
    catalogue: pa.ChunkedArray
    lineage: dict[str, int | None]


def read_inputs(lake: Lake, settings: Settings, ds: str) -> Inputs:
    """Read the holdout events, the training rows and the catalogue of ``ds``.

    Raises:
        EmptyInput: nothing is held out (``matrix.holdout_days`` is 0), or the training
            matrix of ``ds`` has no rows.
    """
    window = holdout_window(settings, ds)
    if window is None:
        raise EmptyInput("matrix.holdout_days is 0: no holdout to evaluate on")
    dates = dates_between(lake.partitions(SILVER_INTERACTIONS.name), *window)
    events = lake.read_arrow(SILVER_INTERACTIONS.name, dates,
                             ["user_id", "item_id", "event_type", "value"])
    train = read_partition(lake, TRAINING_MATRIX.name, ds, ["user_id", "item_id"])
    if train is None:
        raise EmptyInput(f"{TRAINING_MATRIX.name} has no rows for ds={ds}")
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    catalogue = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                                ["item_id"]).column("item_id")
    lineage = {name: lake.version(name) for name in LINEAGE_TABLES}
    return Inputs(window, events, train, catalogue, lineage)


def _matrix(table: pa.Table) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, 0), np.float32)
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(table.num_rows, -1)


def read_model(lake: Lake, ds: str) -> tuple[str, EmbeddingModel]:
    """The model version and embedding model written for ``ds``.

    Raises:
        EmptyInput: no embeddings for ``ds``.
        ValueError: the partitions hold more than one model version.
    """
    from evaluation.embedding_model import EmbeddingModel

    cols = ["id", "vector", "model_version"]
    users = read_partition(lake, USER_EMBEDDINGS.name, ds, cols)
    items = read_partition(lake, ITEM_EMBEDDINGS.name, ds, cols)
    if users is None or items is None:
        raise EmptyInput(f"{USER_EMBEDDINGS.name} and {ITEM_EMBEDDINGS.name} need rows for ds={ds}")
    versions = set(pc.unique(users["model_version"]).to_pylist()) | set(
        pc.unique(items["model_version"]).to_pylist())
    if len(versions) != 1:
        raise ValueError(f"embeddings of ds={ds} hold {len(versions)} model versions: "
                         f"{sorted(versions)}")
    model = EmbeddingModel(users["id"], _matrix(users), items["id"], _matrix(items))
    return versions.pop(), model


# -- scoring --------------------------------------------------------------------------------
def score_stage(stage: str, recs: np.ndarray, holdout: Holdout, ks: Iterable[int]
                ) -> list[dict[str, Any]]:
    """Rows ``stage, slice, metric, k, value, users`` for every slice, cutoff and metric.

    Ranking metrics are means over the slice's users (:func:`ranking_metrics_per_user`);
    ``coverage`` (slice ``all`` only) is the catalogue coverage of the lists and ``said_no``
    (slice ``all``) the share of slots showing an item the user refused during the holdout
    (:func:`said_no_share`). A slice without users gets NaN values.
    """
    rows: list[dict[str, Any]] = []
    slices = holdout.slice_truth()
    by_truth: dict[int, dict[int, dict[str, np.ndarray]]] = {}  # slices sharing a truth
    # matrix (all, cold_users, heavy_users) share its per-user metrics
    for k in sorted(set(ks)):
        for name in SLICES:
            truth, users = slices[name]
            per_k = by_truth.setdefault(id(truth), {})
            if k not in per_k:
                per_k[k] = ranking_metrics_per_user(recs, truth, k) if holdout.n_users \
                    else {m: np.zeros(0) for m in RANKING_METRICS}
            n = int(users.sum())
            for metric in RANKING_METRICS:
                value = nan_mean(per_k[k][metric][users]) if n else float("nan")
                rows.append({"stage": stage, "slice": name, "metric": metric, "k": k,
                             "value": value, "users": n})
        coverage = catalogue_coverage(recs, holdout.items.n_catalogue, k) \
            if holdout.items.n_catalogue else float("nan")
        rows.append({"stage": stage, "slice": "all", "metric": "coverage", "k": k,
                     "value": coverage, "users": holdout.n_users})
        rows.append({"stage": stage, "slice": "all", "metric": "said_no", "k": k,
                     "value": said_no_share(recs, holdout, k), "users": holdout.n_users})
    return rows


def said_no_share(recs: np.ndarray, holdout: Holdout, k: int) -> float:
    """Share of the top-k slots (over every evaluated user) holding an item the user hid,
    marked not interested or disliked during the holdout: a list that shows what was
    refused counts against itself. NaN without users."""
    if not holdout.n_users:
        return float("nan")
    rejected = holdout.rejected
    if rejected is None or rejected.nnz == 0:
        return 0.0
    shown = hit_gains(check_recs(recs), rejected, k) > 0
    return float(shown.sum() / (holdout.n_users * k))


def evaluation_table(rows: list[dict[str, Any]], ds: str, model_version: str,
                     run_id: str | None) -> pa.Table:
    """``gold/evaluation`` rows from metric dicts (missing keys are null)."""
    fields = [f.name for f in EVALUATION.schema]
    filled = [{**{f: None for f in fields}, "model_version": model_version, "run_id": run_id,
               **r, "ds": ds} for r in rows]
    return pa.Table.from_pylist(filled, schema=EVALUATION.schema)


def metric_key(row: Mapping[str, Any]) -> str:
    """MLflow metric name of an evaluation row, e.g. ``model/all/ndcg_at_10``."""
    suffix = row["metric"] if row["k"] is None else f"{row['metric']}_at_{row['k']}"
    return f"{row['stage']}/{row['slice']}/{suffix}"


def headline(rows: Iterable[Mapping[str, Any]], names: Iterable[str], stage: str
             ) -> dict[str, float]:
    """``{"ndcg@10": value, ...}`` of ``stage`` in slice ``all`` from evaluation rows."""
    wanted = {parse_metric(n): n for n in names}
    return {wanted[(r["metric"], r["k"])]: r["value"] for r in rows
            if r["stage"] == stage and r["slice"] == "all" and (r["metric"], r["k"]) in wanted}


# -- the job --------------------------------------------------------------------------------
def write_rows(lake: Lake, ds: str, table: pa.Table, replace_gate_only: bool = False) -> int:
    """Overwrite ``gold/evaluation/ds=<ds>`` with ``table``; returns the Delta version.

    With ``replace_gate_only`` the partition's evaluation rows (stages not starting with
    ``gate``) are kept and only the gate's rows are replaced.
    """
    if replace_gate_only:
        old = read_partition(lake, EVALUATION.name, ds, EVALUATION.schema.names)
        if old is not None:
            kept = old.filter(pc.invert(pc.starts_with(old["stage"], GATE_PREFIX)))
            table = pa.concat_tables([kept.cast(EVALUATION.schema), table])
    return lake.overwrite_partitions(EVALUATION.name, table, [ds])


def score_all(model: EmbeddingModel, holdout: Holdout, tables: Mapping[str, pa.Table],
              ks: list[int]) -> list[dict[str, Any]]:
    """:func:`score_stage` rows of every stage; a model with non-finite vectors gets NaN
    rows (the gate rejects it)."""
    rows = [row for stage, recs in stage_lists(model, holdout, tables, max(ks))
            for row in score_stage(stage, recs, holdout, ks)]
    if not any(r["stage"] == MODEL for r in rows):
        blank = np.full((holdout.n_users, 1), -1, np.int64)
        rows += [{**r, "value": float("nan")} for r in score_stage(MODEL, blank, holdout, ks)]
    return rows


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict[str, Any]:
    """The stage: :func:`evaluate` with the evaluation settings of ``settings``."""
    return evaluate(settings, ds)


def evaluate(settings: Settings, ds: str, sections: EvalSections | None = None
             ) -> dict[str, Any]:
    """Evaluate the model version of ``ds``; write ``gold/evaluation``, log to MLflow.

    Args:
        settings: the root settings (lake, seed, matrix holdout, surfaces).
        ds: logical date ``YYYY-MM-DD``.
        sections: evaluation, gate and MLflow settings (default: from ``settings``).

    Returns:
        ``ds``, ``model_version``, ``users``, headline metrics per stage, the MLflow run id
        and the registered model version.

    Raises:
        EmptyInput: no holdout, no training rows, no embeddings or no positive holdout event.
    """
    from evaluation import registry
    from evaluation.report import log_report

    cfg = sections or eval_sections(settings)
    lake = Lake(settings)
    inputs = read_inputs(lake, settings, ds)
    model_version, model = read_model(lake, ds)
    users = sample_users(positive_events(inputs.events, cfg.offline)["user_id"],
                         cfg.offline.max_users, settings.seed)
    if not users:
        raise EmptyInput(f"no positive holdout event between {inputs.window[0]} and "
                         f"{inputs.window[1]}")
    tables = read_stage_tables(lake, ds, users)
    recommendable = pa.chunked_array(
        [id_array(inputs.catalogue), model.item_id_array,
         *(id_array(t["item_id"]) for t in tables.values())], pa.string())
    holdout = build_holdout(inputs.events, inputs.train, recommendable, cfg.offline,
                            settings.seed)
    rows = score_all(model, holdout, tables, cfg.offline.ks)
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    params = {
        "ds": ds, "model_version": model_version, "holdout_first": inputs.window[0],
        "holdout_last": inputs.window[1], "users": holdout.n_users,
        "max_users": cfg.offline.max_users, "seed": settings.seed,
        "catalogue_items": holdout.items.n_catalogue,
        "heavy_threshold": holdout.heavy_threshold,
        "positive_event_types": ",".join(cfg.offline.positive_event_types),
        "min_rating": cfg.offline.min_rating, "stages": ",".join(stages),
        **{f"als.{k}": v for k, v in settings.als.model_dump().items()},
        **{f"{registry.LAKE_TAG_PREFIX}{t}": v for t, v in inputs.lineage.items()},
    }
    metrics = {metric_key(r): r["value"] for r in rows}
    metrics |= {f"users/{r['slice']}": r["users"] for r in rows
                if r["stage"] == POPULARITY and r["metric"] == "ndcg"}
    with registry.tracking(cfg.mlflow) as client:
        experiment = registry.ensure_experiment(client, cfg.mlflow)
        run_id = registry.evaluation_run(client, experiment, ds, model_version)
        # the model first: MLflow copies a run's metrics into a model logged after them
        version = registry.register_embeddings(
            client, run_id, cfg.mlflow.embeddings_model, model, ds, model_version,
            {t: inputs.lineage[t] for t in (SILVER_INTERACTIONS.name, TRAINING_MATRIX.name,
                                            USER_EMBEDDINGS.name, ITEM_EMBEDDINGS.name)})
        registered = f"{cfg.mlflow.embeddings_model}/{version.version}"
        registry.log_values(client, run_id, params=params, metrics=metrics,
                            tags={"recpipe.registered_model": registered})
        delta_version = write_rows(lake, ds, evaluation_table(rows, ds, model_version, run_id))
        log_report(client, run_id, lake, ds, cfg)
    return {"ds": ds, "model_version": model_version, "users": holdout.n_users,
            "headline": {stage: headline(rows, cfg.offline.headline, stage) for stage in stages},
            "run_id": run_id, "registered": registered, "version": delta_version}


def main(argv: list[str] | None = None) -> int:
    """``recpipe evaluate --ds D``: exit 0 on success, 2 when there is nothing to evaluate."""
    parser = argparse.ArgumentParser(prog="recpipe evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    report = evaluate(settings, args.ds)
    print(json.dumps(report, default=str))
    return 0
