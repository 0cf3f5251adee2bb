"""The ``recpipe`` command: one front for every entry point.

Each subcommand names the module whose ``main(argv) -> int`` it runs; modules are imported
only when their command is called, so ``recpipe --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time

from conf.errors import RecpipeError, exit_code
from recpipe import runlog

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("jobs.datasets.cli", "fetch or generate datasets (movielens-100k, ml-1m, synth)"),
    "ingest": ("jobs.ingest", "validate events into bronze/silver, bad rows to quarantine"),
    "load-catalog": ("jobs.catalog", "load items and users into silver/items and silver/users"),
    "check": ("jobs.quality", "data-quality gate after ingest (quarantine share)"),
    "matrix": ("jobs.training_matrix", "build gold/training_matrix for a date"),
    "embeddings": ("jobs.embeddings", "fit ALS user/item embeddings for a date"),
    "content": ("jobs.content", "content vectors for items"),
    "popularity": ("jobs.popularity", "time-decayed popularity per segment"),
    "covisitation": ("jobs.covisitation", "item co-visitation within sessions"),
    "item-context": ("jobs.item_context", "the item side of a date, built once"),
    "candidates": ("jobs.candidates", "multi-strategy candidate generation"),
    "topn": ("jobs.topn", "precompute top-N per surface and similar items"),
    "consume": ("jobs.stream", "ingest the Kafka event topic into bronze/silver, batch by batch"),
    "hourly": ("jobs.hourly", "ingest the spool, fold in new events, incremental release"),
    "ranker": ("training.cli", "ranker examples, training and export"),
    "evaluate": ("evaluation.offline", "offline evaluation of a model version"),
    "gate": ("evaluation.gate", "promotion gate against the champion"),
    "report": ("evaluation.report", "HTML report with plots"),
    "experiment": ("evaluation.experiment", "online experiments: per-variant report with "
                                            "intervals over users and a sample-ratio check"),
    "export": ("serving_export.release.export", "write the release of a date (and --publish it)"),
    "release": ("serving_export.release.cli",
                "releases: list, show, verify, publish, rollback, prune, history"),
    "serve": ("serving_export.service", "run the lookup service"),
    "run": ("recpipe.run", "run a DAG's tasks without a scheduler (run nightly --date D)"),
    "show": ("jobs.show", "print users' top-N and an item's similar items with titles"),
    "status": ("recpipe.status", "a run's tasks, timings, tables, gate verdict and release"),
    "summary": ("jobs.summary", "print every table in the lake (rows, partitions, version)"),
    "bench": ("bench.cli", "benchmarks: als, ann, topn, quality, ranker, serve"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: recpipe COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


EXIT_BROKEN_PIPE = 141
"""Exit code when the reader of our output went away (128 + SIGPIPE, as a Unix tool's)."""


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code.

    A reader that closes our standard output early (``recpipe --help | head -3``) ends the
    command quietly with :data:`EXIT_BROKEN_PIPE`: no traceback, and no second error when
    Python flushes the dead stream at exit.
    """
    try:
        code = dispatch(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit:  # argparse's --help and errors: their output is still buffered
        if not _flushed():
            raise SystemExit(EXIT_BROKEN_PIPE) from None
        raise
    return code


def _flushed() -> bool:
    """Flush standard output; False (and stdout detached) when its reader is gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _detach_stdout()
        return False
    return True


def _detach_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout closed or not a file: nothing left to flush
        pass
    finally:
        os.close(devnull)


def dispatch(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its module's ``main(argv[1:])``; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"recpipe: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    module = importlib.import_module(COMMANDS[name][0])
    sub = rest[:1] if rest and not rest[0].startswith("-") else []
    command = " ".join([name, *sub])
    ds = runlog.ds_of(rest) if name not in ("run", "status") else None
    runs = _runs_dir() if ds else None
    if runs:
        runlog.append(runs, ds, {"event": "start", "command": command})
    started, code = time.perf_counter(), 1
    try:
        code = int(module.main(rest) or 0)
    except RecpipeError as exc:
        # the one place where domain errors become a message and an exit code
        print(f"recpipe {command}: {exc}", file=sys.stderr)
        code = exit_code(exc)
    finally:
        if runs:
            runlog.append(runs, ds, {"event": "end", "command": command, "code": code,
                                     "seconds": round(time.perf_counter() - started, 3)})
    return code


def _runs_dir():
    from conf import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError:
        return None
    from pathlib import Path

    return Path(settings.resolve(settings.runs_dir))
