"""``recpipe data``: fetch MovieLens 100K or 1M, convert interaction files, make synthetic data.

    recpipe data fetch movielens-100k [--out DIR]
    recpipe data fetch ml-1m [--out DIR] [--src DIR] [--end-date YYYY-MM-DD] [--days N]
    recpipe data convert --format {u.data,ratings.dat,ratings.csv,fixed-split,events}
                         --input PATH --out DIR [--prefix P]
    recpipe data synth --users N --items M --events E --days D --seed S
                       --end-date YYYY-MM-DD --out DIR

``fetch ml-1m`` reads the shared binarized MovieLens 1M (``evaluation.quality.ml1m_dir``,
``../shared/data/ml-1m``); its event timestamps are SYNTHETIC (see :mod:`jobs.datasets.ml1m`).

Bad arguments or malformed input: a message on stderr and exit code 2. A failed download, a
missing dataset folder or a dataset whose counts are wrong: exit code 1.
"""

from __future__ import annotations

import argparse
import logging
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from conf import Settings, load_settings
from conf.errors import DatasetError, UsageError
from jobs.cli_common import landing_dir
from jobs.datasets import ml1m
from jobs.datasets.convert import FORMATS, convert_file
from jobs.datasets.movielens import (
    EXPECTED_COUNTS,
    convert_movielens_100k,
    fetch_movielens_100k,
)
from jobs.datasets.synth import SynthSpec, generate

logger = logging.getLogger(__name__)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe data`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)

    fetch = sub.add_parser("fetch", help="download and convert a public dataset")
    fetch.add_argument("dataset", choices=["movielens-100k", "ml-1m"])
    fetch.add_argument("--out", type=Path, help="default: <data_dir>/<dataset>")
    fetch.add_argument("--landing", help="write into the landing folder instead of --out "
                                         "(empty: the setting landing; the nightly's use)")
    fetch.add_argument("--cache", type=Path,
                       help="movielens-100k: download cache, default: <data_dir>/cache")
    fetch.add_argument("--src", type=Path,
                       help="ml-1m: folder of train/valid/test.txt, default: "
                            "evaluation.quality.ml1m_dir")
    fetch.add_argument("--end-date", type=_day,
                       help=f"ml-1m: last synthetic day, default {ml1m.DEFAULT_END_DATE}")
    fetch.add_argument("--days", type=_positive,
                       help=f"ml-1m: synthetic days, default {ml1m.DEFAULT_DAYS}")

    convert = sub.add_parser("convert", help="convert an interaction file to events.parquet")
    convert.add_argument("--format", required=True, choices=sorted(FORMATS))
    convert.add_argument("--input", required=True, type=Path)
    convert.add_argument("--out", required=True, type=Path)
    convert.add_argument("--prefix", help="event_id prefix (default depends on the format)")

    synth = sub.add_parser("synth", help="generate synthetic events, items and users")
    synth.add_argument("--users", type=_positive, default=10_000)
    synth.add_argument("--items", type=_positive, default=5_000)
    synth.add_argument("--events", type=_non_negative, default=1_000_000)
    synth.add_argument("--days", type=_positive, default=30)
    synth.add_argument("--seed", type=_non_negative, help="default: settings.seed")
    synth.add_argument("--end-date", required=True, type=_day, help="last day, YYYY-MM-DD")
    synth.add_argument("--out", type=Path, help="default: <data_dir>/synth")
    synth.add_argument("--chunk-rows", type=_positive, default=1_000_000,
                       help="events per chunk / Parquet row group")
    synth.add_argument("--tastes", type=_positive, default=8, help="latent tastes")
    return parser


def _report(out_dir: Path, counts: dict[str, int]) -> None:
    for name, rows in counts.items():
        print(f"wrote {out_dir / f'{name}.parquet'}: {rows:,} rows")


def run_fetch(settings: Settings, args: argparse.Namespace) -> dict[str, int]:
    """Fetch and convert ``args.dataset``; check the published counts."""
    data_dir = settings.data_path()
    if args.landing is not None and args.out is not None:
        raise UsageError("give --out or --landing, not both")
    out = (landing_dir(settings, args.landing) if args.landing is not None
           else args.out or data_dir / args.dataset)
    if args.dataset == "ml-1m":
        if args.cache is not None:
            raise UsageError("--cache is for movielens-100k, not ml-1m")
        src = args.src or Path(settings.resolve(settings.evaluation.quality.ml1m_dir))
        counts = ml1m.convert_ml1m(
            src, out,
            end_date=args.end_date or ml1m.DEFAULT_END_DATE,
            days=args.days or ml1m.DEFAULT_DAYS,
            expected=ml1m.EXPECTED_COUNTS,
        )
        _report(out, counts)
        return counts
    if args.src or args.end_date or args.days:
        raise UsageError("--src, --end-date and --days are for ml-1m, not movielens-100k")
    src = fetch_movielens_100k(args.cache or data_dir / "cache")
    counts = convert_movielens_100k(src, out)
    if counts != EXPECTED_COUNTS:
        raise DatasetError(f"MovieLens 100K counts {counts} differ from {EXPECTED_COUNTS}")
    _report(out, counts)
    return counts


def run_convert(args: argparse.Namespace) -> Path:
    """Convert ``args.input`` to ``args.out/events.parquet``."""
    path = convert_file(args.format, args.input, args.out, prefix=args.prefix)
    _report(args.out, {"events": pq.ParquetFile(path).metadata.num_rows})
    return path


def run_synth(settings: Settings, args: argparse.Namespace) -> dict[str, int]:
    """Generate the synthetic dataset described by ``args``."""
    spec = SynthSpec(
        users=args.users, items=args.items, events=args.events, days=args.days,
        seed=settings.seed if args.seed is None else args.seed, end_date=args.end_date,
        tastes=args.tastes, chunk_rows=args.chunk_rows,
    )
    out = args.out or settings.data_path() / "synth"
    counts = generate(spec, out)
    _report(out, counts)
    return counts


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe data``; returns the exit code."""
    args = build_parser().parse_args(argv)
    settings = load_settings()
    if args.action == "fetch":
        run_fetch(settings, args)
    elif args.action == "convert":
        run_convert(args)
    else:
        run_synth(settings, args)
    return 0
