"""``recpipe status [--ds D] [--watch] [--write]``: how a date's run went, or is going.

Shows each task's state and seconds (from the run log every command writes), every lake
table's size and version, the gate's verdict and the live release. ``--watch`` refreshes
until no task is running. ``--json`` prints the same as JSON. ``--write`` (the nightly DAG's
last task, run whatever the gate decided) also writes it as ``<runs_dir>/<ds>.summary.json``
and beside each complete release of the date as ``<releases_root>/<id>.summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from recpipe import runlog


def collect(settings, ds: str) -> dict:
    from jobs.summary import table_summary
    from serving_export.release.publish import current_release, list_releases

    runs = Path(settings.resolve(settings.runs_dir))
    tasks = list(runlog.latest_by_command(runlog.read(runs, ds)).values())
    root = Path(settings.resolve(settings.serving.releases_root))
    releases = [r for r in list_releases(root) if r.ds == ds] if root.exists() else []
    return {
        "ds": ds, "tasks": tasks, "tables": table_summary(settings),
        "gate": gate_verdict(settings, ds),
        "releases": [{"id": r.release_id, "gate_passed": r.gate_passed,
                      "complete": r.complete, "preswap": _preswap(root, r.release_id)}
                     for r in releases],
        "current": current_release(root) if root.exists() else None,
    }


def _preswap(root: Path, release_id: str) -> dict | None:
    """The release's pre-swap verdict (``passed``, ``reasons``, against which live release),
    if it was checked."""
    from serving_export.release.preswap import read_report

    report = read_report(root, release_id)
    if report is None:
        return None
    return {"passed": report["passed"], "live": report["live_id"],
            "reasons": report["reasons"]}


def gate_verdict(settings, ds: str) -> dict | None:
    """The promotion gate's verdict for ``ds`` (``passed``, ``reasons``, ``metrics``), or
    ``None`` when it has not judged that date."""
    from evaluation.gate import load_verdict
    from jobs.lake import Lake

    found = load_verdict(Lake(settings), ds)
    if found is None:
        return None
    passed, reasons, metrics = found
    return {"passed": passed, "reasons": reasons, "metrics": metrics}


def write_summary(settings, status: dict) -> list[Path]:
    """Write ``status`` as JSON to ``<runs_dir>/<ds>.summary.json`` and beside every
    complete release of its date; each file is replaced atomically. Returns the paths."""
    from serving_export.release.publish import RUN_SUMMARY_SUFFIX

    root = Path(settings.resolve(settings.serving.releases_root))
    targets = [Path(settings.resolve(settings.runs_dir)) / f"{status['ds']}.summary.json"]
    targets += [root / f"{r['id']}{RUN_SUMMARY_SUFFIX}" for r in status["releases"]
                if r["complete"]]
    text = json.dumps({**status, "written_at": time.time()}, indent=2, default=str)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return targets


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
    gate = status.get("gate")
    if gate is None:
        lines.append("gate: not judged")
    else:
        lines.append(f"gate: {'passed' if gate['passed'] else 'REJECTED'}")
        lines += [f"  {reason}" for reason in gate["reasons"]]
    lines += ["", format_table(status["tables"]), ""]
    for r in status["releases"]:
        gate = {True: "passed", False: "FAILED", None: "?"}[r["gate_passed"]]
        live = "  <- CURRENT" if r["id"] == status["current"] else ""
        lines.append(f"release {r['id']}  gate {gate}{live}")
        check = r.get("preswap")
        if check is not None:
            verdict = "passed" if check["passed"] else "FAILED (publish blocked)"
            lines.append(f"  pre-swap vs {check['live']}: {verdict}")
            lines += [f"    {reason}" for reason in check["reasons"]]
    lines.append(f"CURRENT release: {status['current']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe status", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", type=parse_ds, help="logical date (default: newest run)")
    parser.add_argument("--watch", action="store_true", help="refresh while tasks run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true",
                        help="also write the summary beside the date's releases")
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
        if args.write:
            for path in write_summary(settings, status):
                print(f"wrote {path}")
        print(json.dumps(status, indent=2) if args.json else render(status), flush=True)
        if not args.watch or not any(t["state"] == "running" for t in status["tasks"]):
            return 0
        time.sleep(5)
        print("\033[2J\033[H", end="")
