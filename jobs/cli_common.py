"""Argument helpers shared by the job entry points."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from conf import Settings, load_settings


def parse_ds(text: str) -> str:
    """Validate a logical date ``YYYY-MM-DD`` (argparse type)."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def parse_hour(text: str) -> int:
    """Validate a logical hour 0-23 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an hour 0-23: {text!r}") from None
    if not 0 <= value <= 23:
        raise argparse.ArgumentTypeError(f"not an hour 0-23: {text!r}")
    return value


def add_landing_arg(parser: argparse.ArgumentParser) -> None:
    """``--landing DIR``: the folder new files arrive in (empty or absent: ``landing``)."""
    parser.add_argument("--landing", default="",
                        help="landing folder (default, or empty: the setting landing)")


def landing_dir(settings: Settings, value: str | None) -> Path:
    """The landing folder: ``value`` when given, else the setting ``landing``, resolved."""
    return Path(value) if value and value.strip() else Path(settings.resolve(settings.landing))


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="config profile (default: RECPIPE_ENV or local)")
    parser.add_argument("--lake-root", help="override lake_root")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {"lake_root": args.lake_root} if getattr(args, "lake_root", None) else None
    return load_settings(env=getattr(args, "env", None), overrides=overrides)
