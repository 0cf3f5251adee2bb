"""``recpipe report --ds D [--out DIR]``: an HTML page with PNG plots of the evaluation.

Reads ``gold/evaluation`` (the date ``ds`` and every earlier one) and writes ``index.html``
with four plots:

- ``history.png``: the headline metrics per date (and model version) for the main stages,
  the gate's verdict marked on the model's points (green passed, red failed);
- ``recall_curves.png``: recall@k against k for every stage and retrieval strategy;
- ``slices.png``: the headline metrics per slice (all, cold users, heavy users, cold items);
- ``gate.png``: candidate, champion and popularity on the gate's metrics, with the verdict.

The page also lists the verdict's reasons, a table of the headline metrics and the MLflow
runs (links when ``mlflow.ui_url`` is set). Plots use matplotlib's object API (no pyplot
state), so reports can be drawn from any thread.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from conf.errors import EmptyInput
from conf.gate import PROJECT_ROOT, EvalSections, eval_sections, parse_metric
from evaluation.holdout import SLICES
from evaluation.stage_lists import GATE_PREFIX, MODEL, POPULARITY
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import EVALUATION

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
_MAIN_STAGES = (MODEL, POPULARITY, "merged")


def load_rows(lake: Lake, ds: str) -> list[dict[str, Any]]:
    """Every ``gold/evaluation`` row of ``ds`` and the dates before it."""
    dates = [d for d in lake.partitions(EVALUATION.name) if d <= ds]
    if not dates:
        return []
    return lake.read_arrow(EVALUATION.name, dates).to_pylist()


def verdict_of(rows: Iterable[Row]) -> dict[str, Any] | None:
    """The gate's verdict among ``rows`` of one date (``None`` if not judged)."""
    for r in rows:
        if r["stage"] == GATE_PREFIX and r["metric"] == "passed" and r["details"]:
            return json.loads(r["details"])
    return None


def _value(rows: Iterable[Row], stage: str, metric: str, k: int, slice_: str = "all"
           ) -> float:
    for r in rows:
        if (r["stage"], r["metric"], r["k"], r["slice"]) == (stage, metric, k, slice_):
            return float("nan") if r["value"] is None else r["value"]
    return float("nan")


def _stages(rows: Iterable[Row]) -> list[str]:
    """Evaluation stages present (gate rows excluded), main stages first."""
    found = list(dict.fromkeys(r["stage"] for r in rows
                               if not r["stage"].startswith(GATE_PREFIX)))
    return [s for s in _MAIN_STAGES if s in found] + sorted(
        s for s in found if s not in _MAIN_STAGES)


# -- plots ----------------------------------------------------------------------------------
def plot_history(rows: Sequence[Row], headline: Sequence[str], path: Path) -> None:
    """Headline metrics per date for the main stages and the final lists."""
    dates = sorted({r["ds"] for r in rows})
    stages = [s for s in _stages(rows) if not s.startswith("strategy/")]
    fig = Figure(figsize=(6.5 * len(headline), 4.2), layout="constrained")
    for i, name in enumerate(headline):
        metric, k = parse_metric(name)
        ax = fig.add_subplot(1, len(headline), i + 1)
        for stage in stages:
            ys = [_value([r for r in rows if r["ds"] == d], stage, metric, k) for d in dates]
            ax.plot(range(len(dates)), ys, marker="o", label=stage)
        for x, d in enumerate(dates):
            verdict = verdict_of(r for r in rows if r["ds"] == d)
            if verdict is not None:
                y = _value([r for r in rows if r["ds"] == d], MODEL, metric, k)
                ax.scatter([x], [y], s=140, facecolors="none", linewidths=2,
                           edgecolors="tab:green" if verdict["passed"] else "tab:red",
                           zorder=3)
        versions = {r["ds"]: r["model_version"] for r in rows}
        ax.set_xticks(range(len(dates)), [f"{d}\n{versions[d]}" for d in dates],
                      rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{name} per date (circle: gate passed/failed)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def plot_recall_curves(rows: Sequence[Row], path: Path) -> None:
    """recall@k against k (log scale) for every stage, slice ``all``."""
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for stage in _stages(rows):
        points = sorted((r["k"], r["value"]) for r in rows
                        if r["stage"] == stage and r["metric"] == "recall"
                        and r["slice"] == "all" and r["value"] is not None)
        if points:
            style = "--" if stage.startswith("strategy/") else "-"
            ax.plot(*zip(*points, strict=True), style, marker=".", label=stage)
    ax.set_xscale("log")
    ks = sorted({r["k"] for r in rows if r["metric"] == "recall" and r["k"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_title("recall@k per stage and retrieval strategy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def plot_slices(rows: Sequence[Row], headline: Sequence[str], path: Path) -> None:
    """Grouped bars: headline metrics per slice (groups) and stage (bars)."""
    stages = _stages(rows)
    fig = Figure(figsize=(6.5 * len(headline), 4.5), layout="constrained")
    width = 0.8 / max(len(stages), 1)
    for i, name in enumerate(headline):
        metric, k = parse_metric(name)
        ax = fig.add_subplot(1, len(headline), i + 1)
        for j, stage in enumerate(stages):
            ys = [_value(rows, stage, metric, k, s) for s in SLICES]
            ax.bar([x + j * width for x in range(len(SLICES))],
                   [0.0 if math.isnan(y) else y for y in ys], width, label=stage)
        users = {r["slice"]: r["users"] for r in rows
                 if r["stage"] == POPULARITY and r["metric"] == metric and r["k"] == k}
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(SLICES))],
                      [f"{s}\n({users.get(s, 0)} users)" for s in SLICES], fontsize=8)
        ax.set_title(f"{name} per slice")
        ax.grid(alpha=0.3, axis="y")
    handles, labels = fig.axes[0].get_legend_handles_labels() if fig.axes else ([], [])
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(stages), 5),
               fontsize=8)
    fig.savefig(path, dpi=100)


def plot_gate(verdict: Mapping[str, Any], path: Path) -> None:
    """Bars of candidate, champion and popularity on the gate's metrics."""
    roles = [r for r in ("candidate", "champion", "popularity") if r in verdict["metrics"]]
    names = list(verdict["metrics"]["candidate"])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(roles)
    colours = {"candidate": "tab:blue", "champion": "tab:orange", "popularity": "tab:gray"}
    for j, role in enumerate(roles):
        ys = [verdict["metrics"][role].get(n) for n in names]
        bars = ax.bar([x + j * width for x in range(len(names))], [y or 0.0 for y in ys],
                      width, color=colours[role],
                      label=role + (f" v{verdict['champion']}" if role == "champion" else ""))
        ax.bar_label(bars, labels=["NaN" if y is None else f"{y:.4f}" for y in ys],
                     fontsize=8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(names))], names)
    state = "PASSED" if verdict["passed"] else "FAILED"
    ax.set_title(f"gate {state}: candidate v{verdict['candidate']}",
                 color="tab:green" if verdict["passed"] else "tab:red")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)


# -- the page -------------------------------------------------------------------------------
def render_html(ds: str, rows: Sequence[Row], headline: Sequence[str],
                verdict: Mapping[str, Any] | None, images: Sequence[str],
                runs: Mapping[str, str | None]) -> str:
    """The report page (plots referenced by file name, next to it)."""
    esc = html.escape
    version = rows[0]["model_version"] if rows else "?"
    if verdict is None:
        gate = "<p>The gate has not judged this evaluation yet.</p>"
    else:
        state = "PASSED" if verdict["passed"] else "FAILED"
        reasons = "".join(f"<li>{esc(r)}</li>" for r in verdict["reasons"]) or \
            "<li>all checks passed</li>"
        checks = "".join(f"<li>{'ok' if c['passed'] else 'FAIL'}: {esc(c['message'])}</li>"
                         for c in verdict.get("checks", []))
        gate = (f"<p class='{state.lower()}'>Gate {state} for candidate version "
                f"{esc(str(verdict['candidate']))} (champion compared: "
                f"{esc(str(verdict['champion']))})</p>"
                f"<ul>{reasons}</ul><details><summary>checks</summary><ul>{checks}</ul>"
                "</details>")
    head = "".join(f"<th>{esc(n)} ({esc(s)})</th>" for n in headline for s in SLICES)
    body = []
    for stage in _stages(rows):
        cells = "".join(
            f"<td>{_value(rows, stage, *parse_metric(n), s):.4f}</td>"
            for n in headline for s in SLICES)
        body.append(f"<tr><td>{esc(stage)}</td>{cells}</tr>")
    links = "".join(
        f"<li><a href='{esc(url)}'>{esc(run)}</a></li>" if url else
        f"<li>run <code>{esc(run)}</code></li>" for run, url in runs.items())
    imgs = "".join(f"<p><img src='{esc(i)}' alt='{esc(i)}'></p>" for i in images)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>recpipe evaluation {esc(ds)}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}} .passed{{color:green;font-weight:bold}}
.failed{{color:#b00;font-weight:bold}} img{{max-width:100%}}</style></head><body>
<h1>Evaluation of {esc(ds)}: model {esc(version)}</h1>
<h2>Gate</h2>{gate}
<h2>Headline metrics</h2>
<table border="1" cellspacing="0"><tr><th>stage</th>{head}</tr>{''.join(body)}</table>
<h2>MLflow runs</h2><ul>{links}</ul>
<h2>Plots</h2>{imgs}
</body></html>
"""


def write_report(lake: Lake, ds: str, out: Path, cfg: EvalSections,
                 run_links: Mapping[str, str | None] | None = None) -> Path:
    """Write ``index.html`` and its PNGs for ``ds`` into ``out``; returns the page's path.

    Raises:
        EmptyInput: ``gold/evaluation`` has no rows for ``ds``.
    """
    rows = load_rows(lake, ds)
    today = [r for r in rows if r["ds"] == ds]
    if not today:
        raise EmptyInput(f"gold/evaluation has no rows for ds={ds}; run `recpipe evaluate`")
    out.mkdir(parents=True, exist_ok=True)
    headline = list(cfg.offline.headline)
    plot_history([r for r in rows if not r["stage"].startswith(f"{GATE_PREFIX}/")],
                 headline, out / "history.png")
    plot_recall_curves(today, out / "recall_curves.png")
    plot_slices(today, headline, out / "slices.png")
    images = ["history.png", "recall_curves.png", "slices.png"]
    verdict = verdict_of(today)
    if verdict is not None:
        plot_gate(verdict, out / "gate.png")
        images.insert(0, "gate.png")
    runs = dict(run_links or {})
    for run in dict.fromkeys(r["run_id"] for r in today if r["run_id"]):
        runs.setdefault(run, None)
    page = out / "index.html"
    page.write_text(render_html(ds, today, headline, verdict, images, runs))
    return page


def run_links(client: Any, cfg: EvalSections, run_ids: Iterable[str]) -> dict[str, str | None]:
    """run id -> link in the MLflow UI (``None`` without ``mlflow.ui_url``)."""
    from evaluation.registry import run_url

    out = {}
    for run_id in run_ids:
        url = None
        if cfg.mlflow.ui_url:
            url = run_url(cfg.mlflow, client.get_run(run_id).info.experiment_id, run_id)
        out[run_id] = url
    return out


def log_report(client: Any, run_id: str, lake: Lake, ds: str, cfg: EvalSections) -> None:
    """Draw the report of ``ds`` and log it to run ``run_id`` under ``report/``."""
    with tempfile.TemporaryDirectory(prefix="recpipe-report-") as tmp:
        write_report(lake, ds, Path(tmp), cfg, run_links(client, cfg, [run_id]))
        client.log_artifacts(run_id, tmp, "report")


def main(argv: list[str] | None = None) -> int:
    """``recpipe report --ds D [--out DIR]``: 0 on success, 2 when ``ds`` has no rows."""
    parser = argparse.ArgumentParser(prog="recpipe report", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    parser.add_argument("--out", type=Path,
                        help="output folder (default: offline_eval.report_dir/ds=<ds>)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    cfg = eval_sections(settings)
    out = args.out
    if out is None:
        root = Path(cfg.offline.report_dir).expanduser()
        out = (root if root.is_absolute() else PROJECT_ROOT / root) / f"ds={args.ds}"
    lake = Lake(settings)
    links = None
    if cfg.mlflow.ui_url:
        from evaluation.registry import tracking

        runs = {r["run_id"] for r in load_rows(lake, args.ds)
                if r["ds"] == args.ds and r["run_id"]}
        with tracking(cfg.mlflow) as client:
            links = run_links(client, cfg, sorted(runs))
    page = write_report(lake, args.ds, out, cfg, links)
    print(json.dumps({"ds": args.ds, "report": str(page)}))
    return 0
