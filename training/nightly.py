"""``recpipe ranker train --ds D``: the nightly's ranker, trained on the examples of ``D``'s
label windows, exported beside the lake, registered in MLflow."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from algorithms.ranker.features import candidate_feature_spec
from conf import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.gate import MlflowSettings
    from conf.ranker import RankerSettings
    from jobs.lake import Lake
    from training.pipeline import FittedRanker

log = logging.getLogger(__name__)


# -- the nightly steps ----------------------------------------------------------------------
def _export_replacing(fitted: FittedRanker, out_dir: Path, metrics: Mapping[str, float],
                      params: Mapping[str, Any]) -> dict[str, Any]:
    """Export into a sibling folder, then swap it in for ``out_dir`` (a rerun of a date
    replaces its export; the old one is removed only once the new one is complete)."""
    from training.export import export_ranker

    fresh = out_dir.with_name(out_dir.name + ".new")
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(fresh, ignore_errors=True)
    manifest = export_ranker(fitted.model, fitted.config, fitted.encoder, fresh, metrics,
                             params)
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    fresh.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def holdout_metrics(fitted: FittedRanker, valid: pa.Table, batch_size: int, k: int,
                    retrieval_weight: float | str = "validation",
                    weight_grid: Sequence[float] = (0.5,)) -> dict[str, float]:
    """AUC and log loss of the held-out examples, and NDCG@k of their candidates ordered by
    the model, by the retrieval blend and by their fusion (see
    :func:`jobs.rank_candidates.fuse`); users with a positive candidate; metrics from
    :mod:`evaluation.metrics`.

    ``retrieval_weight`` ``validation`` picks the fusion weight: the weight of
    ``weight_grid`` with the best NDCG@k here (ties: the larger weight), returned as
    ``retrieval_weight`` with its NDCG as ``ndcg_at_<k>_fused``; each tried weight's NDCG is
    ``ndcg_at_<k>_fused_w<weight>``. A number is used as it is.
    """
    import numpy as np
    import pyarrow.compute as pc

    from algorithms.ranker.scoring import predict
    from evaluation.metrics import ctr_metrics, ndcg_at_k
    from jobs.rank_candidates import fuse
    from training.labels import ORIGIN_CANDIDATE
    from training.pipeline import encoded_batches, table_source
    from training.splits import candidate_lists

    batches = encoded_batches(fitted.encoder, table_source(valid), batch_size, batch_size, None)
    probs, labels, _ = predict(fitted.model, batches)
    out = ctr_metrics(probs, labels)
    cand = pc.equal(valid.column("origin"), ORIGIN_CANDIDATE).to_numpy(zero_copy_only=False)
    users = np.asarray(list_keys(valid), dtype=object)[cand]
    items = np.asarray(valid.column("item_id").to_pylist(), dtype=object)[cand]
    retrieval = valid.column("retrieval_score").to_numpy(zero_copy_only=False)[cand]

    def ndcg(scores: np.ndarray) -> float:
        recs, truth = candidate_lists(users.tolist(), items.tolist(), scores, labels[cand], k)
        return ndcg_at_k(recs, truth, k) if len(recs) else float("nan")

    out[f"ndcg_at_{k}_ranked"] = ndcg(probs[cand])
    out[f"ndcg_at_{k}_retrieval"] = ndcg(retrieval)
    weights = list(weight_grid) if retrieval_weight == "validation" else [
        float(retrieval_weight)]
    tried = {w: ndcg(fuse(users, items, probs[cand], retrieval, w)) for w in weights}
    for w, value in tried.items():
        out[f"ndcg_at_{k}_fused_w{w:g}"] = value
    best = max(sorted(tried, reverse=True), key=lambda w: np.nan_to_num(tried[w], nan=-1.0))
    out["retrieval_weight"] = float(best)
    out[f"ndcg_at_{k}_fused"] = tried[best]
    out["ndcg_users"] = float(len(set(users[labels[cand] > 0].tolist())))
    return out


def list_keys(examples: pa.Table) -> list[str]:
    """The candidate list each example row belongs to: its user in its label window
    (``user_id`` and ``source_ds``), so a user's lists of two windows stay apart."""
    users = examples.column("user_id").to_pylist()
    if "source_ds" not in examples.column_names:
        return users
    return [f"{u}@{d}" for u, d in zip(users, examples.column("source_ds").to_pylist(),
                                       strict=True)]


def register_ranker(cfg: MlflowSettings, export: Path, ds: str, metrics: Mapping[str, float],
                    params: Mapping[str, Any], lineage: Mapping[str, int | None]
                    ) -> dict[str, str]:
    """Log a training run (params, metrics, the export as artifacts under ``ranker/``) and
    register its export as a version of ``cfg.ranker_model``.

    Idempotent: a version already registered for ``ds`` with the same weights (model
    version ``ranker-<ds>-<weights sha256[:12]>``) is returned as it is.

    Returns:
        ``{"run_id", "model_version", "registered"}`` (``registered`` = ``name/version``).
    """
    from mlflow.exceptions import MlflowException

    from algorithms.ranker.artifact import WEIGHTS_FILE, read_manifest
    from evaluation import registry

    manifest = read_manifest(export, verify=False)
    sha = next(f["sha256"] for f in manifest["files"] if f["path"] == WEIGHTS_FILE)
    model_version = f"ranker-{ds}-{sha[:12]}"
    name = cfg.ranker_model
    with registry.tracking(cfg) as client:
        existing = registry.find_version(client, name, ds)
        if existing is not None and existing.tags.get(registry.TAG_MODEL_VERSION) == \
                model_version:
            return {"run_id": existing.run_id, "model_version": model_version,
                    "registered": f"{name}/{existing.version}"}
        experiment = registry.ensure_experiment(client, cfg)
        tags = {registry.TAG_STEP: "train_ranker", registry.TAG_DS: ds,
                registry.TAG_MODEL_VERSION: model_version}
        run = client.create_run(experiment, run_name=f"train ranker {ds}", tags=tags)
        run_id = run.info.run_id
        registry.log_values(client, run_id, params=params, metrics=metrics)
        client.log_artifacts(run_id, str(export), artifact_path="ranker")
        client.set_terminated(run_id)
        with contextlib.suppress(MlflowException):  # already registered
            client.create_registered_model(name)
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/ranker", run_id=run_id,
            tags={**tags, registry.TAG_EVAL_RUN: run_id,
                  **{f"{registry.LAKE_TAG_PREFIX}{t}": str(v) for t, v in lineage.items()
                     if v is not None}})
    log.info("registered %s version %s (%s)", name, version.version, model_version)
    return {"run_id": run_id, "model_version": model_version,
            "registered": f"{name}/{version.version}"}


def read_within_budget(lake: Lake, windows: Sequence[str], rs: RankerSettings
                       ) -> tuple[pa.Table, pa.Table, dict[str, float]]:
    """``(train, valid, figures)``: the example rows of ``windows`` of the users
    :func:`training.splits.user_split` draws within ``rs.max_train_examples`` and
    ``rs.max_valid_examples``; only those rows are read (the rest of the windows are
    scanned for their user ids only). ``figures``: the rows and users there were and
    were drawn."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from jobs.tables import EXAMPLES
    from training.splits import rows_per_user, user_split

    dataset = lake.dataset(EXAMPLES.name, windows)
    users, rows = rows_per_user(dataset.to_batches(columns=["user_id"]))
    train_users, valid_users = user_split(users, rows, rs.valid_fraction, rs.seed,
                                          rs.max_train_examples, rs.max_valid_examples)
    drawn = pa.array(np.concatenate([train_users, valid_users]).tolist(), pa.string())
    table = dataset.to_table(filter=pads.field("user_id").isin(drawn))
    held = pc.is_in(table.column("user_id"),
                    value_set=pa.array(valid_users.tolist(), pa.string()))
    log.info("ranker examples: %d rows of %d users, %d drawn within the budgets (%s train, "
             "%s valid rows)", rows.sum(), len(users), table.num_rows, rs.max_train_examples,
             rs.max_valid_examples)
    figures = {"example_rows_available": float(rows.sum()),
               "example_users_available": float(len(users)),
               "example_users_drawn": float(len(drawn))}
    return table.filter(pc.invert(held)), table.filter(held), figures


def example_dates(settings: Settings, ds: str, available: Sequence[str]) -> list[str]:
    """The example partitions the ranker of ``ds`` trains on: those of
    :func:`training.labels.window_dates` in ``available`` (a missing one is logged)."""
    from training.labels import window_dates

    wanted = window_dates(settings, ds)
    missing = [d for d in wanted if d not in set(available)]
    if missing:
        log.info("ranker of %s: no examples for %s (label windows skipped)", ds,
                 ", ".join(missing))
    return [d for d in wanted if d not in missing]


def run_train_ds(settings: Settings, ds: str, mlflow_cfg: MlflowSettings | None = None,
                 use_mlflow: bool = True) -> dict[str, Any]:
    """Train the ranker of ``ds`` on ``gold/ranker_examples/ds=<ds>``, export, register.

    The example users are split (``ranker.valid_fraction``, seeded) into training and
    validation users; validation drives early stopping and gives the reported metrics.

    Args:
        settings: root settings.
        ds: the logical date.
        mlflow_cfg: the MLflow store (default: the root settings' ``mlflow`` section).
        use_mlflow: log and register the model.

    Returns:
        A summary: ``skipped`` when there are no examples for ``ds``; else row counts,
        metrics, the export folder and the registered version.
    """
    from conf.gate import eval_sections
    from jobs.lake import Lake
    from jobs.rank_candidates import export_dir
    from jobs.tables import CANDIDATES, EXAMPLES, SILVER_INTERACTIONS
    from training.labels import label_window
    from training.pipeline import fit_ranker, table_source

    lake = Lake(settings)
    if ds not in lake.partitions(EXAMPLES.name):
        log.info("no %s partition for %s: no ranker is trained; the precompute of %s uses "
                 "retrieval-only scores", EXAMPLES.name, ds, ds)
        return {"ds": ds, "skipped": f"no ranker examples for {ds}"}
    rs = settings.ranker
    windows = example_dates(settings, ds, lake.partitions(EXAMPLES.name))
    train, valid, drawn = read_within_budget(lake, windows, rs)
    spec = candidate_feature_spec(rs)
    fitted = fit_ranker(rs, spec, table_source(train), table_source(valid))
    metrics = {
        **{f"valid_{k}": v for k, v in holdout_metrics(
            fitted, valid, rs.eval_batch_size, rs.eval_k, rs.retrieval_weight,
            rs.retrieval_weight_grid).items()},
        "best_epoch": float(fitted.result.best_epoch),
        "epochs_run": float(len(fitted.result.history)),
        "train_samples_per_s": fitted.result.train_samples_per_s,
        "train_rows": float(train.num_rows), "valid_rows": float(valid.num_rows),
        "train_positives": float(sum(train.column("label").to_pylist())),
        "example_windows": float(len(windows)),
        **drawn,
    }
    params = {**{f"ranker.{k}": v for k, v in rs.model_dump(mode="json").items()},
              "ds": ds, "source_ds": label_window(settings, ds).source_ds,
              "example_partitions": ",".join(windows)}
    out = export_dir(settings, ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    _export_replacing(fitted, out, metrics, params)
    summary: dict[str, Any] = {"ds": ds, "export": str(out), "metrics": metrics}
    if use_mlflow:
        cfg = mlflow_cfg or eval_sections(settings).mlflow
        lineage = {name: lake.version(name)
                   for name in (EXAMPLES.name, CANDIDATES.name, SILVER_INTERACTIONS.name)}
        summary.update(register_ranker(cfg, out, ds, metrics, params, lineage))
    log.info("ranker of %s: valid AUC %.4f, logloss %.4f, NDCG@%d %.4f (retrieval %.4f, "
             "fused %.4f with retrieval weight %g)", ds, metrics["valid_auc"],
             metrics["valid_logloss"], rs.eval_k, metrics[f"valid_ndcg_at_{rs.eval_k}_ranked"],
             metrics[f"valid_ndcg_at_{rs.eval_k}_retrieval"],
             metrics[f"valid_ndcg_at_{rs.eval_k}_fused"], metrics["valid_retrieval_weight"])
    return summary


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict[str, Any]:
    """The stage: :func:`run_train_ds` with MLflow."""
    return run_train_ds(settings, ds)
