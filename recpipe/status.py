"""``recpipe status [--ds D] [--watch]``: how a date's run went, or is going.

Shows each task's state and seconds (from the run log every command writes), every lake
table's size and version, the gate's verdict and the live release. ``--watch`` refreshes
until no task is running. ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from recpipe import runlog


def collect(settings, ds: str) -> dict:
    from jobs.summary import table_summary
    from serving_export.release import current_release, list_releases

    runs = Path(settings.resolve(settings.runs_dir))
    tasks = list(runlog.latest_by_command(runlog.read(runs, ds)).values())
    root = Path(settings.resolve(settings.serving.releases_root))
    releases = [r for r in list_releases(root) if r.ds == ds] if root.exists() else []
    return {
        "ds": ds, "tasks": tasks, "tables": table_summary(settings),
        "releases": [{"id": r.release_id, "gate_passed": r.gate_passed,
                      "complete": r.complete} for r in releases],
        "current": current_release(root) if root.exists() else None,
    }


def render(status: dict) -> str:
    from jobs.summary import format_table

    lines = [f"run of ds={status['ds']}"]
    for t in status["tasks"]:
        secs = f"{t['seconds']:8.1f} s" if "seconds" in t else \
            f"{time.time() - t['started']:8.1f} s so far"
        lines.append(f"  {t['command']:<22} {t['state']:<8} {secs}")
    if not status["tasks"]:
        lines.append("  (no task has run for this date)")
    total = sum(t.get("seconds", 0) for t in status["tasks"])
    lines.append(f"  {'total':<22} {'':<8} {total:8.1f} s")
    lines += ["", format_table(status["tables"]), ""]
    for r in status["releases"]:
        gate = {True: "passed", False: "FAILED", None: "?"}[r["gate_passed"]]
        live = "  <- CURRENT" if r["id"] == status["current"] else ""
        lines.append(f"release {r['id']}  gate {gate}{live}")
    lines.append(f"CURRENT release: {status['current']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe status", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", type=parse_ds, help="logical date (default: newest run)")
    parser.add_argument("--watch", action="store_true", help="refresh while tasks run")
    parser.add_argument("--json", action="store_true")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    ds = args.ds
    if ds is None:
        logs = sorted(Path(settings.resolve(settings.runs_dir)).glob("*.jsonl"))
        if not logs:
            print("no runs yet")
            return 0
        ds = logs[-1].stem
    while True:
        status = collect(settings, ds)
        print(json.dumps(status, indent=2) if args.json else render(status), flush=True)
        if not args.watch or not any(t["state"] == "running" for t in status["tasks"]):
            return 0
        time.sleep(5)
        print("\033[2J\033[H", end="")
