"""The HTML report: written from ``gold/evaluation`` rows made by hand (no MLflow needed)."""

from __future__ import annotations

import json

import pytest

from evaluation.gate import Check, Verdict, gate_rows
from evaluation.holdout import SLICES
from evaluation.offline import evaluation_table, write_rows
from jobs.lake import Lake
from tests.conftest import recpipe

from .test_offline import sections

D1, D2 = "2024-03-01", "2024-03-02"
STAGES = {"model": 0.30, "popularity": 0.10, "merged": 0.25, "strategy/ann": 0.20,
          "topn/home_feed": 0.28}
PNG = b"\x89PNG\r\n\x1a\n"


def _rows(level: float) -> list[dict]:
    rows = []
    for stage, base in STAGES.items():
        for slice_ in SLICES:
            for k in (1, 10, 100):
                for metric in ("ndcg", "recall"):
                    rows.append({"stage": stage, "slice": slice_, "metric": metric, "k": k,
                                 "value": level * base * (1 + k / 100), "users": 5})
    return rows


class _Holdout:
    n_users = 5


@pytest.fixture
def lake(settings, tmp_path):
    lake = Lake(settings)
    cfg = sections(tmp_path)
    write_rows(lake, D1, evaluation_table(_rows(1.0), D1, "als-d1", "run-d1"))
    write_rows(lake, D2, evaluation_table(_rows(0.5), D2, "als-d2", "run-d2"))
    verdict = Verdict(ds=D2, passed=False, reasons=("ndcg@10 0.1650 drops <&> too much",),
                      candidate="2", champion="1",
                      metrics={"candidate": {"ndcg@10": 0.165}, "champion": {"ndcg@10": 0.33},
                               "popularity": {"ndcg@10": 0.055}},
                      checks=(Check("no_regression:ndcg@10", False, "drops"),))
    rows = gate_rows(verdict, _Holdout(), 0.4, cfg.gate)
    write_rows(lake, D2, evaluation_table(rows, D2, "als-d2", "run-d2"),
               replace_gate_only=True)
    return lake


def test_report_page_and_plots(lake, tmp_path):
    from evaluation.report import write_report

    out = tmp_path / "report"
    page = write_report(lake, D2, out, sections(tmp_path), {"run-d2": "http://ui/#/r"})
    for name in ("gate.png", "history.png", "recall_curves.png", "slices.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    text = page.read_text()
    assert "Gate FAILED for candidate version 2" in text
    assert "drops &lt;&amp;&gt; too much" in text  # reasons are escaped
    assert "<a href='http://ui/#/r'>run-d2</a>" in text
    assert "model als-d2" in text
    # headline table: model ndcg@10 on D2 = 0.5 * 0.30 * 1.1
    assert "<td>model</td><td>0.1650</td>" in text
    for stage in STAGES:
        assert f"<td>{stage}</td>" in text


def test_report_without_verdict_and_main(lake, settings, tmp_path, monkeypatch, capsys):
    from evaluation import report

    page = report.write_report(lake, D1, tmp_path / "r1", sections(tmp_path))
    assert "not judged" in page.read_text() and not (tmp_path / "r1" / "gate.png").exists()
    monkeypatch.setattr(report, "eval_sections", lambda _: sections(tmp_path))
    code = recpipe(["report", "--ds", D2, "--out", str(tmp_path / "r2"),
                        "--lake-root", settings.lake_root])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["report"].endswith("index.html")
    assert recpipe(["report", "--ds", "2024-01-01", "--out", str(tmp_path / "r3"),
                        "--lake-root", settings.lake_root]) == 2
    assert "no rows for ds=2024-01-01" in capsys.readouterr().err


def test_gate_rows_survive_and_evaluation_rewrite_drops_them(lake):
    from evaluation.gate import read_verdict

    assert read_verdict(lake, D2)["reasons"] == ["ndcg@10 0.1650 drops <&> too much"]
    assert read_verdict(lake, D1) is None
    from evaluation.gate import load_verdict

    assert load_verdict(lake, D2) == (False, ["ndcg@10 0.1650 drops <&> too much"], {
        "ndcg@10": 0.165, "champion.ndcg@10": 0.33, "popularity.ndcg@10": 0.055})
    assert load_verdict(lake, D1) is None
    write_rows(lake, D2, evaluation_table(_rows(0.5), D2, "als-d2", "run-d2b"))
    assert read_verdict(lake, D2) is None  # a new evaluation calls for a new verdict
