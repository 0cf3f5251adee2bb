"""``recpipe ranker``: nightly examples and training, or train/score on Parquet files.

Usage::

    recpipe ranker examples --ds D      # gold/ranker_examples/ds=D (see training.examples)
    recpipe ranker train --ds D [--no-mlflow]
                                        # train on the examples of D, export to
                                        # <models>/ranker/D/, log and register in MLflow
    recpipe ranker train --train P [P...] --valid P [P...] --out DIR
                         [--spec feature_spec.json] [--architecture dlrm|dcn] [--epochs N]
                         [--seed N]
    recpipe ranker score --model DIR --input P [P...] --output FILE.parquet
                         [--keep user_id,item_id] [--batch-size N]

With ``--ds`` both nightly steps exit 0 without doing anything when there is nothing to
learn from yet (no candidates of ``D - ranker.label_days``: the first nights).

``P`` is a Parquet file or a folder of them. Training examples hold the feature columns of
the spec (default: :func:`algorithms.ranker.features.candidate_feature_spec`), ``label`` and
optionally ``weight``. Other settings come from ``conf/`` (section ``ranker``) and
``RECPIPE_RANKER__*`` variables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from algorithms.ranker.features import FeatureSpec, candidate_feature_spec
from conf import Settings, load_settings
from conf.errors import InputDataError, RecpipeError, UsageError
from jobs.cli_common import parse_ds

if TYPE_CHECKING:
    from conf.gate import MlflowSettings
    from training.pipeline import FittedRanker

log = logging.getLogger(__name__)




def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe ranker`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe ranker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("examples", help="build gold/ranker_examples for a date")
    ex.add_argument("--ds", required=True, type=parse_ds, help="logical date YYYY-MM-DD")
    _common(ex)
    tr = sub.add_parser("train", help="train, export (and register) the ranker")
    tr.add_argument("--ds", type=parse_ds, help="train on gold/ranker_examples/ds=DS")
    tr.add_argument("--no-mlflow", action="store_true",
                    help="with --ds: do not log or register the model in MLflow")
    tr.add_argument("--train", nargs="+", type=Path, help="training Parquet")
    tr.add_argument("--valid", nargs="+", type=Path, help="validation Parquet")
    tr.add_argument("--out", type=Path, help="export directory (must not exist)")
    tr.add_argument("--spec", type=Path, help="feature spec JSON (default: candidate features)")
    tr.add_argument("--architecture", choices=["dlrm", "dcn"], help="default: ranker setting")
    tr.add_argument("--epochs", type=int, help="default: ranker.epochs")
    tr.add_argument("--seed", type=int, help="default: ranker.seed")
    _common(tr)
    sc = sub.add_parser("score", help="score Parquet rows with an exported model")
    sc.add_argument("--model", required=True, type=Path, help="export directory")
    sc.add_argument("--input", nargs="+", required=True, type=Path, help="Parquet to score")
    sc.add_argument("--output", required=True, type=Path, help="Parquet file to write")
    sc.add_argument("--keep", default="user_id,item_id",
                    help="input columns copied to the output beside 'score'")
    sc.add_argument("--batch-size", type=int, default=8192, help="rows scored at a time")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="config profile (default: RECPIPE_ENV or local)")
    parser.add_argument("--lake-root", help="override lake_root")


def run_train(
    settings: Settings,
    train_paths: Sequence[Path],
    valid_paths: Sequence[Path],
    out_dir: Path,
    spec: FeatureSpec | None = None,
) -> dict[str, Any]:
    """Fit and export a ranker; return the export's manifest."""
    from training.pipeline import fit_ranker, parquet_source

    if out_dir.exists():
        raise UsageError(f"--out {out_dir} already exists; give a new directory")
    spec = spec or candidate_feature_spec(settings.ranker)
    fitted = fit_ranker(
        settings.ranker, spec, parquet_source(train_paths, spec), parquet_source(valid_paths, spec)
    )
    params = settings.ranker.model_dump(mode="json")
    return fitted.export(out_dir, params={k: str(v) for k, v in params.items()})


def run_score(
    model_dir: Path, inputs: Sequence[Path], output: Path, keep: Sequence[str], batch_size: int
) -> int:
    """Score every row of ``inputs`` into ``output`` (``keep`` columns + ``score``); rows."""
    from algorithms.ranker.artifact import load_ranker
    from training.data import parquet_batches, parquet_files

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    ranker = load_ranker(model_dir)
    spec = ranker.encoder.spec
    files = parquet_files(inputs)
    columns = spec.columns(with_label=False)
    wanted_keep = [c for c in keep if c]
    rows = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for batch in parquet_batches(files, columns, wanted_keep, batch_size):
            probs = ranker.score_table(batch, batch_size)
            kept = [c for c in wanted_keep if c in batch.schema.names]
            table = pa.table({**{c: batch.column(c) for c in kept}, "score": probs})
            if writer is None:
                writer = pq.ParquetWriter(str(output), table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    log.info("scored %d rows into %s", rows, output)
    return rows


def _settings(args: argparse.Namespace) -> Settings:
    update = {k: v for k, v in (("architecture", getattr(args, "architecture", None)),
                                ("epochs", getattr(args, "epochs", None)),
                                ("seed", getattr(args, "seed", None))) if v is not None}
    overrides: dict[str, Any] = {"ranker": update} if update else {}
    if getattr(args, "lake_root", None):
        overrides["lake_root"] = args.lake_root
    return load_settings(env=getattr(args, "env", None), overrides=overrides or None)


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
    from training.splits import split_by_user

    lake = Lake(settings)
    if ds not in lake.partitions(EXAMPLES.name):
        log.info("no %s partition for %s: no ranker is trained; the precompute of %s uses "
                 "retrieval-only scores", EXAMPLES.name, ds, ds)
        return {"ds": ds, "skipped": f"no ranker examples for {ds}"}
    rs = settings.ranker
    windows = example_dates(settings, ds, lake.partitions(EXAMPLES.name))
    table = lake.read_arrow(EXAMPLES.name, windows)
    train, valid = split_by_user(table, rs.valid_fraction, rs.seed)
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


def _spark(settings: Settings):
    from jobs.spark import get_spark

    return get_spark(settings)


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe ranker``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return int(exc.code or 0)
    try:
        if args.action == "examples":
            from training.examples import run as run_examples_job

            settings = _settings(args)
            print(json.dumps(run_examples_job(_spark(settings), settings, args.ds)))
        elif args.action == "train" and args.ds is not None:
            if args.train or args.valid or args.out or args.spec:
                raise UsageError("--ds trains on the lake's examples: drop --train, --valid, "
                                 "--out and --spec")
            summary = run_train_ds(_settings(args), args.ds, use_mlflow=not args.no_mlflow)
            print(json.dumps(summary, default=str))
        elif args.action == "train":
            missing = [f"--{n}" for n in ("train", "valid", "out") if getattr(args, n) is None]
            if missing:
                raise UsageError(f"give --ds, or all of --train, --valid and --out "
                                 f"(missing {', '.join(missing)})")
            spec = FeatureSpec.from_json(args.spec.read_text()) if args.spec else None
            manifest = run_train(_settings(args), args.train, args.valid, args.out, spec)
            print(f"exported {args.out}: valid AUC {manifest['metrics']['valid_auc']:.4f}")
        else:
            rows = run_score(args.model, args.input, args.output, args.keep.split(","),
                             args.batch_size)
            print(f"wrote {args.output}: {rows:,} rows")
    except (OSError, ValueError) as exc:
        if isinstance(exc, RecpipeError):
            raise
        # files named on the command line that cannot be read or do not fit the feature spec
        raise InputDataError(str(exc)) from exc
    return 0
