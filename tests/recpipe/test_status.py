"""``recpipe status --write``: the run's summary (task timings, tables, the gate's verdict,
the releases) written for the date and beside its complete releases, pruned with them."""

from __future__ import annotations

import json

import pyarrow as pa

from bench.release_synth import synthetic_release_data
from conf import load_settings
from jobs.lake import Lake
from jobs.tables import EVALUATION
from recpipe import runlog, status
from serving_export.release.publish import RUN_SUMMARY_SUFFIX, list_releases, prune, publish
from serving_export.release.writer import write_release

DS = "2024-01-01"


def _settings(tmp_path):
    return load_settings(overrides={
        "lake_root": str(tmp_path / "lake"), "runs_dir": str(tmp_path / "runs"),
        "serving": {"releases_root": str(tmp_path / "releases")}})


def _verdict(lake: Lake, passed: bool, reasons: list[str]) -> None:
    details = {"passed": passed, "reasons": reasons, "metrics": {"candidate": {"ndcg@10": 0.3},
                                                                 "popularity": {"ndcg@10": 0.2}}}
    lake.overwrite_partitions(EVALUATION.name, pa.table({
        "model_version": ["m1"], "stage": ["gate"], "slice": ["all"], "metric": ["passed"],
        "k": pa.array([None], pa.int32()), "value": [float(passed)], "users": [80],
        "run_id": [None], "details": [json.dumps(details)], "ds": [DS]}))


def test_a_rejected_run_is_summarised_without_a_release(tmp_path, capsys, monkeypatch):
    settings = _settings(tmp_path)
    for key, value in (("LAKE_ROOT", "lake"), ("RUNS_DIR", "runs"),
                       ("SERVING__RELEASES_ROOT", "releases")):
        monkeypatch.setenv(f"RECPIPE_{key}", str(tmp_path / value))
    runs = tmp_path / "runs"
    runlog.append(runs, DS, {"event": "start", "command": "ingest"})
    runlog.append(runs, DS, {"event": "end", "command": "ingest", "code": 0, "seconds": 4.5})
    runlog.append(runs, DS, {"event": "start", "command": "gate"})
    runlog.append(runs, DS, {"event": "end", "command": "gate", "code": 1, "seconds": 2.0})
    _verdict(Lake(settings), False, ["served ndcg@10 0.2 does not beat popularity"])
    assert status.main(["--ds", DS, "--write"]) == 0
    written = json.loads((runs / f"{DS}.summary.json").read_text())
    assert {t["command"]: (t["state"], t["seconds"]) for t in written["tasks"]} == {
        "ingest": ("ok", 4.5), "gate": ("failed", 2.0)}
    assert written["gate"]["passed"] is False
    assert written["gate"]["reasons"] == ["served ndcg@10 0.2 does not beat popularity"]
    assert written["releases"] == [] and written["current"] is None
    assert "gold/evaluation" in {t["table"] for t in written["tables"]}
    shown = capsys.readouterr().out
    assert "gate: REJECTED" in shown and "does not beat popularity" in shown


def test_the_summary_lies_beside_the_release_and_is_pruned_with_it(tmp_path):
    settings = _settings(tmp_path)
    lake = Lake(settings)
    _verdict(lake, True, [])
    root = tmp_path / "releases"
    for rid, ds in (("r1", "2023-12-31"), ("r2", DS)):
        write_release(root, rid, synthetic_release_data(20, 150, topn=10, dim=4, ds=ds))
        publish(root, rid)
    paths = status.write_summary(settings, status.collect(settings, DS))
    beside = root / f"r2{RUN_SUMMARY_SUFFIX}"
    assert beside in paths and not (root / f"r1{RUN_SUMMARY_SUFFIX}").exists()
    summary = json.loads(beside.read_text())
    assert summary["gate"]["passed"] is True and summary["current"] == "r2"
    # the releases of the date, as their manifests say (synthetic releases pass the gate)
    manifest = json.loads((root / "r2" / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True
    assert summary["releases"] == [{"id": "r2", "gate_passed": True, "complete": True,
                                    "preswap": None}]
    # a summary file in the releases folder is not taken for a release
    assert [r.release_id for r in list_releases(root)] == ["r1", "r2"]
    write_release(root, "r3", synthetic_release_data(20, 150, topn=10, dim=4, ds=DS))
    publish(root, "r3")
    status.write_summary(settings, status.collect(settings, DS))
    assert (root / f"r3{RUN_SUMMARY_SUFFIX}").exists()
    # r1 is neither current nor the rollback target: pruned, r2's summary stays with r2
    assert prune(root, keep=1) == ["r1"]
    assert beside.exists() and (root / "r2").is_dir()
