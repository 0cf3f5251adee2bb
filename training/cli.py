"""``recpipe ranker``: train and export the ranker, or score a table with an export.

Usage::

    recpipe ranker train --train P [P...] --valid P [P...] --out DIR
                         [--spec feature_spec.json] [--architecture dlrm|dcn] [--epochs N]
                         [--seed N]
    recpipe ranker score --model DIR --input P [P...] --output FILE.parquet
                         [--keep user_id,item_id] [--batch-size N]

``P`` is a Parquet file or a folder of them. Training examples hold the feature columns of
the spec (default: :func:`training.features.candidate_feature_spec`), ``label`` and
optionally ``weight``. Other settings come from ``conf/`` (section ``ranker``) and
``RECPIPE_RANKER__*`` variables.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conf import ConfigError, Settings, load_settings
from training.errors import ArtifactError, SchemaError, TrainingError
from training.features import FeatureSpec, candidate_feature_spec

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """Bad command-line input (reported on stderr with exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe ranker`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe ranker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    tr = sub.add_parser("train", help="fit the encoder, train, export")
    tr.add_argument("--train", nargs="+", required=True, type=Path, help="training Parquet")
    tr.add_argument("--valid", nargs="+", required=True, type=Path, help="validation Parquet")
    tr.add_argument("--out", required=True, type=Path, help="export directory (must not exist)")
    tr.add_argument("--spec", type=Path, help="feature spec JSON (default: candidate features)")
    tr.add_argument("--architecture", choices=["dlrm", "dcn"], help="default: ranker setting")
    tr.add_argument("--epochs", type=int, help="default: ranker.epochs")
    tr.add_argument("--seed", type=int, help="default: ranker.seed")
    sc = sub.add_parser("score", help="score Parquet rows with an exported model")
    sc.add_argument("--model", required=True, type=Path, help="export directory")
    sc.add_argument("--input", nargs="+", required=True, type=Path, help="Parquet to score")
    sc.add_argument("--output", required=True, type=Path, help="Parquet file to write")
    sc.add_argument("--keep", default="user_id,item_id",
                    help="input columns copied to the output beside 'score'")
    sc.add_argument("--batch-size", type=int, default=8192, help="rows scored at a time")
    return parser


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
    from training.data import parquet_batches, parquet_files
    from training.export import load_ranker

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
    update = {k: v for k, v in (("architecture", args.architecture), ("epochs", args.epochs),
                                ("seed", args.seed)) if v is not None}
    return load_settings(overrides={"ranker": update} if update else None)


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe ranker``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return int(exc.code or 0)
    try:
        if args.action == "train":
            spec = FeatureSpec.from_json(args.spec.read_text()) if args.spec else None
            manifest = run_train(_settings(args), args.train, args.valid, args.out, spec)
            print(f"exported {args.out}: valid AUC {manifest['metrics']['valid_auc']:.4f}")
        else:
            rows = run_score(args.model, args.input, args.output, args.keep.split(","),
                             args.batch_size)
            print(f"wrote {args.output}: {rows:,} rows")
    except (UsageError, ConfigError, SchemaError, ArtifactError, FileNotFoundError,
            ValueError) as exc:
        print(f"recpipe ranker {args.action}: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"recpipe ranker {args.action}: training failed: {exc}", file=sys.stderr)
        return 1
    return 0
