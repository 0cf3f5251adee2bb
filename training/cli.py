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
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from algorithms.ranker.features import FeatureSpec, candidate_feature_spec
from conf import Settings, load_settings
from conf.errors import InputDataError, RecpipeError, UsageError
from jobs.cli_common import parse_ds

if TYPE_CHECKING:
    pass

from training.nightly import run_train_ds

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
