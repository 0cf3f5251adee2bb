"""``recpipe bench quality``: our models on public protocols, beside the published figures.

Usage::

    recpipe bench quality --protocol msr-ml100k [--json OUT] [--quick]
    recpipe bench quality --protocol recbole-ml1m [--json OUT] [--quick]
    recpipe bench quality --protocol fixed-split --train P --valid P --test P [--json OUT]
    recpipe bench quality --protocol synthetic [--shape 30000x40000x1000000] [--json OUT]

Every model is tuned on validation data only (grids in ``evaluation.quality`` settings); the
test set is scored once per model with the chosen settings. ``--quick`` runs a small user
sample with small grids (seconds; for CI). ``synthetic`` generates a fixed split of the
given users x items x interactions (a cost test at the size of the academic sets; its
figures are not comparable with published ones).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

from conf import Settings, load_settings
from conf.errors import UsageError
from evaluation.protocols import PROTOCOLS, ProtocolData, format_table, run_protocol

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = "30000x40000x1000000"
"""``synthetic``'s default users x items x interactions (the size of Gowalla or Yelp2018)."""


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"UxIxN"`` as three positive integers.

    Raises:
        UsageError: not three positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--shape must look like 30000x40000x1000000, got {text!r}")
    users, items, interactions = (int(p) for p in parts)
    return users, items, interactions

def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe bench quality`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe bench quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--json", type=Path, help="write the full result as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="small user sample and small grids (seconds; for CI)")
    parser.add_argument("--train", type=Path, help="fixed-split: train file")
    parser.add_argument("--valid", type=Path, help="fixed-split: validation file")
    parser.add_argument("--test", type=Path, help="fixed-split: test file")
    parser.add_argument("--data-dir", type=Path,
                        help="msr-ml100k: dataset cache (default: settings.data_dir)")
    parser.add_argument("--ml1m-dir", type=Path,
                        help="recbole-ml1m: folder of the shared ML-1M files "
                             "(default: evaluation.quality.ml1m_dir)")
    parser.add_argument("--shape", default=DEFAULT_SHAPE,
                        help="synthetic: users x items x interactions "
                             f"(default {DEFAULT_SHAPE})")
    parser.add_argument("--models", help="comma-separated tuned models (default: settings)")
    parser.add_argument("--seed", type=int, help="model seed (default: settings.seed)")
    return parser


def resolve(path: str | Path) -> Path:
    """A settings path: absolute as is, relative from the repository root."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def load_data(settings: Settings, args: argparse.Namespace, seed: int) -> ProtocolData:
    """Read the protocol's dataset and build its matrices.

    Raises:
        UsageError: fixed-split without its three files, or split files given to another
            protocol.
    """
    quality = settings.evaluation.quality
    split_files = (args.train, args.valid, args.test)
    if args.protocol == "fixed-split":
        if not all(split_files):
            raise UsageError("fixed-split needs --train, --valid and --test")
        from evaluation.protocols import fixed_split

        parts = fixed_split.read_splits(args.train, args.valid, args.test)
        return fixed_split.build(parts, quality, args.quick, seed)
    if any(split_files):
        raise UsageError(f"--train/--valid/--test are for fixed-split, not {args.protocol}")
    if args.protocol == "synthetic":
        from evaluation.protocols import synthetic

        users, items, interactions = parse_shape(args.shape)
        if interactions > users * items // 2:
            raise UsageError(f"--shape {args.shape}: {interactions} interactions do not fit "
                             f"{users} x {items} at density <= 0.5")
        return synthetic.build(users, items, interactions, quality, args.quick, seed)
    if args.protocol == "recbole-ml1m":
        from evaluation.protocols import recbole_ml1m

        users, items = recbole_ml1m.read_ml1m(args.ml1m_dir or resolve(quality.ml1m_dir))
        return recbole_ml1m.build(users, items, quality, args.quick, seed)
    from evaluation.protocols import msr_ml100k

    users, items = msr_ml100k.read_ml100k(args.data_dir or Path(settings.data_dir))
    return msr_ml100k.build(users, items, quality, args.quick, seed)


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Run the protocol named in ``args``, print the table, write the JSON; return the result."""
    start = time.perf_counter()
    seed = settings.seed if args.seed is None else args.seed
    quality = settings.evaluation.quality
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        try:
            quality = quality.model_copy(update={"models": type(quality)(models=models).models})
        except ValueError as exc:
            raise UsageError(f"--models {args.models!r}: {exc}") from exc
    data = load_data(settings, args, seed)
    result = run_protocol(data, quality, seed, quick=args.quick)
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(result), indent=2, allow_nan=False) + "\n")
        logger.info("wrote %s", args.json)
    return result


def _finite(value: Any) -> Any:
    """Replace NaN and infinities by None so the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe bench quality``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return int(exc.code or 0)
    run(load_settings(), args)
    return 0
