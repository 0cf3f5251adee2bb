"""``recpipe run nightly --date D`` (or ``hourly --date D --hour H``): a DAG's tasks in order,
without a scheduler.

For a data scientist's laptop or a one-off rebuild. The tasks run in this process, one after
another in the DAG's order, so they share one Spark session (no per-task JVM start).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from graphlib import TopologicalSorter
from pathlib import Path

from jobs.cli_common import parse_ds
from recpipe.stages import HOURLY, NIGHTLY, Stage

log = logging.getLogger(__name__)
PIPELINES: dict[str, tuple[Stage, ...]] = {"nightly": NIGHTLY, "hourly": HOURLY}


def ordered(stages: tuple[Stage, ...]) -> list[Stage]:
    """Stages in a dependency order (upstream first; ties in declaration order)."""
    by_id = {s.task_id: s for s in stages}
    graph = TopologicalSorter({s.task_id: s.upstream for s in stages})
    return [by_id[t] for t in graph.static_order()]


def main(argv: list[str] | None = None) -> int:
    from recpipe.cli import main as recpipe_main

    parser = argparse.ArgumentParser(prog="recpipe run", description=__doc__.split("\n")[0])
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--date", required=True, type=parse_ds, help="logical date ds")
    parser.add_argument("--landing", type=Path,
                        help="folder with events/items/users files (default: the setting "
                             "landing)")
    parser.add_argument("--dataset", default="", help="public dataset to fetch first")
    parser.add_argument("--hour", type=int, choices=range(24), metavar="H",
                        help="logical hour 0-23 UTC (hourly: required)")
    parser.add_argument("--spool", default="", help="event spool folder (hourly; default: "
                                                    "serving.spool_dir)")
    parser.add_argument("--from-task", help="skip the tasks before this one")
    parser.add_argument("--to-task", help="stop after this task")
    args = parser.parse_args(argv)
    if args.pipeline == "hourly" and args.hour is None:
        parser.error("the hourly pipeline needs --hour H (0-23)")
    values = {"ds": args.date, "landing": str(args.landing.resolve()) if args.landing else "",
              "dataset": args.dataset, "hour": "" if args.hour is None else str(args.hour),
              "spool": str(Path(args.spool).resolve()) if args.spool else ""}
    # a stage's output (e.g. the hourly parent) is left empty: its consumer derives it
    values.update({s.output: "" for s in PIPELINES[args.pipeline] if s.output})
    timings = {}
    started = args.from_task is None
    for stage in ordered(PIPELINES[args.pipeline]):
        started = started or stage.task_id == args.from_task
        if not started or (stage.only_if and not values[stage.only_if]):
            continue
        log.info("task %s: recpipe %s", stage.task_id, " ".join(stage.argv(**values)))
        t0 = time.perf_counter()
        code = recpipe_main(stage.argv(**values))
        timings[stage.task_id] = round(time.perf_counter() - t0, 2)
        if code:
            log.error("task %s failed with exit code %s", stage.task_id, code)
            for final in ordered(PIPELINES[args.pipeline]):  # e.g. the run's summary
                if final.always and final.task_id != stage.task_id:
                    recpipe_main(final.argv(**values))
            return code
        if stage.task_id == args.to_task:
            break
    summary = {"pipeline": args.pipeline, "ds": args.date, "seconds": timings}
    if args.hour is not None:
        summary["hour"] = args.hour
    print(json.dumps(summary))
    return 0
