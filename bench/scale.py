"""``recpipe bench scale``: the nightly's cost curves over a ladder of data sizes.

For each size of the ladder: ``recpipe data synth`` generates events, items and users with
fixed generator settings (printed and kept in the JSON); the nights before the measured one
are run as far as the measured night needs them (the candidates and ranker examples of its
label windows, so ``ranker_examples`` and ``ranker_train`` do their full steady-state work);
then every task of the nightly DAG runs, in order, each as its own ``recpipe`` process as
Airflow runs it, timed and with its process tree's peak memory
(:mod:`bench.scale_measure`). Each task's cost exponent is the slope of log seconds over log
events between the two largest sizes (every size's raw seconds stay in the JSON).

Ladders: ``quick`` (two small sizes, for a test), ``default`` (1M, 3M, 10M events), ``full``
(adds 30M events of 1M users). Writes ``--json OUT``, a Markdown table beside it (``.md``)
and a PNG of the cost curves (``.png``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.scale_measure import run_task
from conf.errors import UsageError

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    """One rung of the ladder."""

    events: int
    users: int
    items: int


LADDERS: dict[str, tuple[Size, ...]] = {
    "quick": (Size(20_000, 1_000, 500), Size(60_000, 3_000, 1_500)),
    "default": (Size(1_000_000, 30_000, 10_000), Size(3_000_000, 100_000, 30_000),
                Size(10_000_000, 300_000, 100_000)),
}
LADDERS["full"] = (*LADDERS["default"], Size(30_000_000, 1_000_000, 100_000))

GENERATOR = {"days": 56, "tastes": 8, "end_date": "2024-06-30"}
"""The synthetic generator's settings, the same for every size (its other knobs keep their
defaults: 5% inactive users, 5% cold items, Zipf 1.0, sessions of about 6 events)."""
SETTINGS = {"RECPIPE_RANKER__EXAMPLE_WINDOWS": "2", "RECPIPE_RANKER__LABEL_DAYS": "14",
            "RECPIPE_MATRIX__HOLDOUT_DAYS": "7", "RECPIPE_CANDIDATES__PER_USER": "300"}
"""Pipeline settings of the bench (printed): the ranker of the measured night trains on two
label windows (the measured night's own and the one before), a week of holdout, and each
user's merged candidates are cut to the 300 best by the retrieval blend (what the ranker
scores and the rules choose from; the default 1,000 is for catalogues of MovieLens size)."""
BYTES_PER_EVENT = 2_000
"""Disk the bench needs per generated event (landing, bronze, silver, gold, releases of the
nights run, with room); refused before generating when the disk has less."""


def night_dates(end: date, windows: int, label_days: int) -> list[str]:
    """The dates to run, oldest first: the earlier nights the measured one needs (one per
    extra label window, plus the night whose candidates the oldest window labels), then the
    measured night ``end``."""
    return [(end - timedelta(days=label_days * k)).isoformat() for k in range(windows, -1, -1)]


def split_landing(landing: Path, dates: list[str], work: Path) -> dict[str, Path]:
    """One landing folder per night, as a daily feed delivers it: the first night's holds
    every event up to its date, each later night's the events after the night before, up to
    its own date (a night's ingest quarantines events after its date). Streams the
    generator's row groups; the items and users files are linked into each folder."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = pq.ParquetFile(landing / "events.parquet")
    folders = {ds: work / f"landing-{ds}" for ds in dates}
    bounds = [(date.fromisoformat(ds) + timedelta(days=1)).isoformat() for ds in dates]
    writers = {}
    try:
        for ds, folder in folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("items.parquet", "users.parquet"):
                target = folder / name
                if not target.exists():
                    target.symlink_to(landing / name)
            writers[ds] = pq.ParquetWriter(folder / "events.parquet", source.schema_arrow)
        for group in range(source.metadata.num_row_groups):
            table = source.read_row_group(group)
            low = None
            for ds, bound in zip(dates, bounds, strict=True):
                keep = pc.less(table["ts"], bound)
                if low is not None:
                    keep = pc.and_(keep, pc.greater_equal(table["ts"], low))
                part = table.filter(keep)
                if part.num_rows:
                    writers[ds].write_table(part)
                low = bound
    finally:
        for writer in writers.values():
            writer.close()
    return folders


def exponent(events: list[int], seconds: list[float]) -> float | None:
    """Slope of log seconds over log events between the two largest sizes."""
    if len(events) < 2 or min(seconds[-2:]) <= 0:
        return None
    return round(math.log(seconds[-1] / seconds[-2]) / math.log(events[-1] / events[-2]), 3)


def pipeline_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SETTINGS)
    env.update({
        "RECPIPE_LAKE_ROOT": str(work / "lake"), "RECPIPE_RUNS_DIR": str(work / "runs"),
        "RECPIPE_WORK_DIR": str(work / "work"), "RECPIPE_LANDING": str(work / "landing"),
        "RECPIPE_SERVING__RELEASES_ROOT": str(work / "releases"),
        "RECPIPE_SERVING__SPOOL_DIR": str(work / "spool"),
        "RECPIPE_MLFLOW__TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "RECPIPE_MLFLOW__ARTIFACT_ROOT": str(work / "mlflow-artifacts"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    })
    return env


def run_size(size: Size, work: Path, seed: int) -> dict[str, Any]:
    """Generate one size, run the earlier nights, then measure every task of the last."""
    from recpipe.run import ordered
    from recpipe.stages import NIGHTLY

    recpipe = [sys.executable, "-m", "recpipe"]
    env = pipeline_env(work)
    work.mkdir(parents=True, exist_ok=True)
    synth = run_task([*recpipe, "data", "synth", "--users", str(size.users), "--items",
                      str(size.items), "--events", str(size.events), "--days",
                      str(GENERATOR["days"]), "--tastes", str(GENERATOR["tastes"]),
                      "--seed", str(seed), "--end-date", GENERATOR["end_date"],
                      "--out", str(work / "landing")], env, work / "synth.log", REPO)
    if synth.code:
        raise RuntimeError(f"recpipe data synth failed; see {work / 'synth.log'}")
    dates = night_dates(date.fromisoformat(GENERATOR["end_date"]),
                        int(SETTINGS["RECPIPE_RANKER__EXAMPLE_WINDOWS"]),
                        int(SETTINGS["RECPIPE_RANKER__LABEL_DAYS"]))
    landings = split_landing(work / "landing", dates, work)
    for k, ds in enumerate(dates[:-1]):  # the oldest only needs its candidates
        to_task = "candidates" if k == 0 else "ranker_examples"
        done = run_task([*recpipe, "run", "nightly", "--date", ds, "--to-task", to_task],
                        {**env, "RECPIPE_LANDING": str(landings[ds])},
                        work / f"night-{ds}.log", REPO)
        if done.code:
            raise RuntimeError(f"the night of {ds} failed; see {work / f'night-{ds}.log'}")
    ds = dates[-1]
    env["RECPIPE_LANDING"] = str(landings[ds])
    values = {"ds": ds, "landing": "", "dataset": ""}
    tasks: dict[str, dict[str, Any]] = {}
    for stage in ordered(NIGHTLY):
        if stage.only_if and not values[stage.only_if]:
            continue
        log = work / f"task-{stage.task_id}.log"
        result = run_task([*recpipe, *stage.argv(**values)], env, log, REPO)
        tasks[stage.task_id] = asdict(result)
        logger.info("%s %s: %.1f s, %.0f MiB (%s), exit %d", size, stage.task_id,
                    result.seconds, result.peak_rss_mb, result.method, result.code)
        # A gate rejection (a verdict, not a fault) still lets the rest run and be measured;
        # publish then refuses the release, as it must.
        expected = stage.task_id == "gate" or (stage.task_id == "publish"
                                               and tasks["gate"]["code"] != 0)
        if result.code and not expected:
            raise RuntimeError(f"task {stage.task_id} failed ({result.code}); see {log}")
    return {"size": asdict(size), "ds": ds, "tasks": tasks, "synth_s": synth.seconds,
            "gate_passed": tasks["gate"]["code"] == 0, "quality": night_quality(work, ds)}


QUALITY_STAGES = ("popularity", "merged", "topn/home_feed")


def night_quality(work: Path, ds: str) -> dict[str, float]:
    """The measured night's NDCG@10 and recall@100 (all users of its holdout) of the
    popularity baseline, the merged candidates (cut to ``candidates.per_user``) and the
    served home feed, from its ``gold/evaluation`` rows."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(str(work / "lake" / "gold" / "evaluation")).to_pyarrow_table(
        partitions=[("ds", "=", ds)], columns=["stage", "slice", "metric", "k", "value"])
    table = table.filter(pc.equal(table.column("slice"), "all"))
    out = {}
    for row in table.to_pylist():
        name = f"{row['metric']}@{row['k']}"
        if row["stage"] in QUALITY_STAGES and name in ("ndcg@10", "recall@100"):
            out[f"{row['stage']} {name}"] = round(row["value"], 4)
    return dict(sorted(out.items()))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of the issue: sizes, per-task seconds/peaks/exponent, the largest night."""
    events = [r["size"]["events"] for r in runs]
    names = list(runs[-1]["tasks"])
    stages = {}
    for name in names:
        secs = [r["tasks"].get(name, {}).get("seconds", 0.0) for r in runs]
        peaks = [r["tasks"].get(name, {}).get("peak_rss_mb", 0.0) for r in runs]
        stages[name] = {"seconds": secs, "peak_rss_mb": peaks, "exponent": exponent(events, secs)}
    exponents = [s["exponent"] for s in stages.values() if s["exponent"] is not None]
    last = runs[-1]["tasks"]
    return {
        "sizes": [r["size"] for r in runs], "stages": stages,
        "max_exponent": max(exponents) if exponents else None,
        "largest_events": events[-1],
        "largest_wall_s": round(sum(t["seconds"] for t in last.values()), 1),
        "largest_peak_rss_mb": max(t["peak_rss_mb"] for t in last.values()),
        "memory_method": sorted({t["method"] for r in runs for t in r["tasks"].values()}),
        "gate_passed": [r.get("gate_passed") for r in runs],
        "quality": [r.get("quality", {}) for r in runs],
        "generator": GENERATOR, "settings": SETTINGS,
    }


def markdown(summary: dict[str, Any]) -> str:
    sizes = summary["sizes"]
    head = " | ".join(f"{s['events']:,} ev s / MiB" for s in sizes)
    lines = [f"| task | {head} | exponent |", "|---|" + "---|" * (len(sizes) + 1)]
    for name, st in summary["stages"].items():
        cells = " | ".join(f"{s:.1f} / {m:.0f}" for s, m in zip(st["seconds"], st["peak_rss_mb"],
                                                                strict=True))
        lines.append(f"| {name} | {cells} | {st['exponent']} |")
    walls = " | ".join(f"{sum(st['seconds'][k] for st in summary['stages'].values()):.0f} s"
                       for k in range(len(sizes)))
    lines.append(f"| **night** | {walls} | |")
    for size, quality in zip(sizes, summary.get("quality", []), strict=False):
        if quality:
            lines.append(f"\n{size['events']:,} events: " + ", ".join(
                f"{k} {v}" for k, v in quality.items()))
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Seconds per task against events, log-log."""
    import matplotlib
    from matplotlib.figure import Figure

    events = [s["events"] for s in summary["sizes"]]
    fig = Figure(figsize=(11, 6))
    ax = fig.add_subplot()
    colours = matplotlib.colormaps["tab20"].colors
    for k, (name, st) in enumerate(summary["stages"].items()):
        if max(st["seconds"]) >= 1.0:
            ax.plot(events, st["seconds"], marker="os^"[k % 3], color=colours[k % 20],
                    label=f"{name} ({st['exponent']})")
    top = max(st["seconds"][0] for st in summary["stages"].values())
    ax.plot(events, [top * e / events[0] for e in events], ls=":", color="grey",
            label="linear (exponent 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events")
    ax.set_ylabel("seconds")
    ax.set_title("recpipe nightly: seconds per task (exponent between the two largest sizes)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    """``recpipe bench scale [--ladder quick|default|full] [--json OUT] [--workdir DIR]``."""
    from conf import load_settings

    parser = argparse.ArgumentParser(prog="recpipe bench scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ladder", default="default", help=f"one of {sorted(LADDERS)}")
    parser.add_argument("--quick", action="store_true", help="the quick ladder")
    parser.add_argument("--json", type=Path, help="write the figures here (.md, .png beside)")
    parser.add_argument("--workdir", type=Path,
                        help="where the sizes' lakes go (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the lakes afterwards")
    args = parser.parse_args(argv)
    ladder = "quick" if args.quick else args.ladder
    if ladder not in LADDERS:
        raise UsageError(f"unknown ladder {ladder!r}; expected one of {sorted(LADDERS)}")
    sizes = LADDERS[ladder]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="recpipe-bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    need = max(s.events for s in sizes) * BYTES_PER_EVENT
    free = shutil.disk_usage(root).free
    if free < need:
        raise UsageError(f"ladder {ladder!r} needs about {need / 2**30:.0f} GiB free in {root} "
                         f"(its largest size), {free / 2**30:.0f} GiB are free")
    settings = load_settings()
    print(f"ladder {ladder}: {[asdict(s) for s in sizes]}\ngenerator {GENERATOR}\n"
          f"settings {SETTINGS}", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        for size in sizes:
            runs.append(run_size(size, root / f"events-{size.events}", settings.seed))
            if not args.keep:
                shutil.rmtree(root / f"events-{size.events}", ignore_errors=True)
            summary = {**summarise(runs), "ladder": ladder, "complete": len(runs) == len(sizes)}
            if args.json:  # after every size, so a long ladder cut short keeps its figures
                write(summary, runs, args.json)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(markdown(summary))
    print(f"max exponent {summary['max_exponent']}; largest night {summary['largest_wall_s']} s, "
          f"peak {summary['largest_peak_rss_mb']:.0f} MiB ({summary['memory_method']})")
    return 0


def write(summary: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    """The JSON (with every size's raw task figures), its Markdown table and the PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**summary, "runs": runs}, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(summary))
    plot(summary, path.with_suffix(".png"))
