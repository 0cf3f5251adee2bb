"""``recpipe bench ranker``: the ranker in the pipeline against retrieval-only scoring, and
the CTR check of the torchrec models, both on MovieLens 100K.

Usage::

    recpipe bench ranker [--part pipeline|ctr|all] [--json OUT] [--seed N] [--epochs N]
                         [--lake DIR] [--models dlrm,dcn] [--data-dir DIR] [--keep-neutral]

Part ``pipeline`` (the measured part of the ranker issue), temporal split: a lake (a fresh
temporary one, or ``--lake DIR``, reused when it already holds the candidates) gets the
nightly stages up to the candidates for D1 = 1998-04-08 and D2 = 1998-04-22 with
``matrix.holdout_days = 14`` and ``ranker.label_days = 14``; the examples of D2 (candidates
of D1 labelled by 1998-03-26 .. 1998-04-08) train the ranker (``ranker.*`` settings, MLflow
in the temporary folder); the top-N of D2 (surface ``home_feed``, business rules included)
is computed from the same candidates ordered three ways: as served (the ranker fused with
the retrieval order, with the weight training chose on its own validation users, never on
the holdout; ``ranker.retrieval_weight``), by the ranker alone, and by the retrieval
blend (the baseline); all are scored on the holdout 1998-04-09 .. 1998-04-22 with
``evaluation.holdout`` / ``evaluation.metrics`` (NDCG@10, recall@100; ratings >= 4 are
relevant). ``--seeds 42,1,2`` trains one ranker per seed (the seed also draws the validation
users) and reports means: the holdout has about 80 users, one seed is noisy. Also: AUC and
log loss of the held-out example users, training samples/s, and batch-inference samples/s
(encode + forward of the exported TorchScript model, and the whole Spark
``ranked_candidates`` pass, features included).

Part ``ctr``, protocol (RecBole's context-aware setup): one example per rating; ratings of 3
are dropped (``--keep-neutral`` keeps them as negatives, as RecBole's packaged ml-100k
config does); label = rating >= 4. Features: user, item, age, gender, occupation, genres
(multi-hot) and release year as tokens, plus age and release year as standardised numbers
(DLRM needs a dense input). Random 80/10/10 split of the examples with the seed; early
stopping on validation AUC; AUC and log loss on test, training samples/s and inference
samples/s. Printed beside RecBole's published ML-1M figures: a different, larger dataset, so
an order of magnitude check, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.ranker_ctr import format_table, run_ctr
from bench.ranker_pipeline import format_pipeline, run_pipeline
from conf import Settings, load_settings
from conf.errors import UsageError

if TYPE_CHECKING:  # training imports torch: loaded only when a model runs

    pass

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe bench ranker`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe bench ranker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["pipeline", "ctr", "all"], default="all",
                        help="which measurement to run (default: both)")
    parser.add_argument("--json", type=Path, help="write the full result as JSON here")
    parser.add_argument("--seed", type=int, help="split and model seed (default: ranker.seed)")
    parser.add_argument("--models", default="dlrm,dcn", help="ctr: comma-separated dlrm, dcn")
    parser.add_argument("--epochs", type=int, help="most epochs (default: ranker.epochs)")
    parser.add_argument("--data-dir", type=Path,
                        help="ctr: ML-100K Parquet folder (default: <data_dir>/movielens-100k)")
    parser.add_argument("--keep-neutral", action="store_true",
                        help="ctr: keep ratings of 3 as negatives instead of dropping them")
    parser.add_argument("--seeds", help="pipeline: comma-separated seeds, one ranker each; "
                        "the figures are their means (default: --seed)")
    parser.add_argument("--architecture", choices=["dlrm", "dcn"],
                        help="pipeline: the ranker's architecture (default: ranker setting)")
    parser.add_argument("--windows", type=int,
                        help="pipeline: label windows the ranker trains on (default: "
                             "ranker.example_windows); each needs the candidates of one more "
                             "earlier date")
    parser.add_argument("--lake", type=Path,
                        help="pipeline: lake folder to build or reuse (default: a temporary "
                             "folder, removed afterwards)")
    parser.add_argument("--quick", action="store_true",
                        help="the CTR part with DLRM for one epoch (for a test; the pipeline "
                             "part needs two nightly runs)")
    return parser


def parse_seeds(text: str) -> list[int]:
    """``"42,1,2"`` -> ``[42, 1, 2]``.

    Raises:
        UsageError: an entry is not an integer, or none is given.
    """
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise UsageError(f"--seeds must list at least one seed, got {text!r}")
    return seeds


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts, print their tables, write the JSON; return the result.

    The pipeline part's figures are the top-level keys (``ndcg@10_ranked``, ...); the CTR
    check's result sits under ``ctr``.
    """
    if args.quick:
        args.part, args.models, args.epochs = "ctr", "dlrm", 1
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("dlrm", "dcn")]
    if bad or not models:
        raise UsageError(f"--models must list dlrm and/or dcn, got {args.models!r}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.windows is not None and args.windows < 1:
        raise UsageError(f"--windows must be >= 1, got {args.windows}")
    seed = settings.ranker.seed if args.seed is None else args.seed
    seeds = parse_seeds(args.seeds) if args.seeds else [seed]
    result: dict[str, Any] = {}
    if args.part in ("pipeline", "all"):
        tmp = None if args.lake else Path(tempfile.mkdtemp(prefix="recpipe-bench-ranker-"))
        try:
            result.update(run_pipeline(settings, args.lake or tmp, seeds, args.epochs,
                                       args.architecture, args.windows))
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        print(format_pipeline(result))
    if args.part in ("ctr", "all"):
        result["ctr"] = run_ctr(settings, args, models, seed)
        print(format_table(result["ctr"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        logger.info("wrote %s", args.json)
    return result


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe bench ranker``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return int(exc.code or 0)
    run(load_settings(), args)
    return 0
