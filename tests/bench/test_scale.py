"""``recpipe bench scale``: refusals before any data is generated, the landing split per
night, and the figures it derives (exponents, table, plot) from measured runs."""

from __future__ import annotations

import math
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.scale import exponent, main, markdown, night_dates, plot, split_landing, summarise
from conf.errors import UsageError


def test_an_unknown_ladder_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(UsageError, match="unknown ladder 'huge'.*default"):
        main(["--ladder", "huge", "--workdir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_a_ladder_larger_than_the_disk_is_refused_before_generating(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _: usage._replace(free=5 * 2**30))
    with pytest.raises(UsageError, match="needs about 19 GiB free.*5 GiB are free"):
        main(["--ladder", "default", "--workdir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_the_nights_run_are_one_per_label_window_before_the_measured_one():
    assert night_dates(date(2024, 6, 30), 2, 14) == ["2024-06-02", "2024-06-16", "2024-06-30"]
    assert night_dates(date(2024, 6, 30), 0, 14) == ["2024-06-30"]


def test_each_night_lands_only_the_events_since_the_night_before(tmp_path):
    src = tmp_path / "landing"
    src.mkdir()
    ts = ["2024-06-01T10:00:00", "2024-06-02T23:59:59", "2024-06-03T00:00:00",
          "2024-06-16T12:00:00", "2024-06-17T00:00:01", "2024-06-30T08:00:00"]
    pq.write_table(pa.table({"event_id": [f"e{k}" for k in range(6)], "ts": ts}),
                   src / "events.parquet", row_group_size=2)
    for name in ("items.parquet", "users.parquet"):
        pq.write_table(pa.table({"id": ["x"]}), src / name)
    folders = split_landing(src, ["2024-06-02", "2024-06-16", "2024-06-30"], tmp_path)
    got = {ds: pq.read_table(f / "events.parquet").column("event_id").to_pylist()
           for ds, f in folders.items()}
    assert got == {"2024-06-02": ["e0", "e1"], "2024-06-16": ["e2", "e3"],
                   "2024-06-30": ["e4", "e5"]}
    assert (folders["2024-06-16"] / "items.parquet").resolve() == src / "items.parquet"


def run(events: int, seconds: dict[str, float], peak: float = 100.0) -> dict:
    return {"size": {"events": events, "users": events // 30, "items": events // 100},
            "tasks": {t: {"seconds": s, "peak_rss_mb": peak, "method": "cgroup", "code": 0}
                      for t, s in seconds.items()}}


def test_exponents_come_from_the_two_largest_sizes(tmp_path):
    runs = [run(1_000_000, {"linear": 10.0, "square": 1.0}),
            run(3_000_000, {"linear": 31.0, "square": 9.0}, peak=300.0),
            run(10_000_000, {"linear": 100.0, "square": 100.0}, peak=900.0)]
    summary = summarise(runs)
    assert summary["stages"]["linear"]["exponent"] == pytest.approx(
        math.log(100 / 31) / math.log(10 / 3), abs=1e-3)
    assert summary["stages"]["square"]["exponent"] == pytest.approx(2.0, abs=1e-3)
    assert summary["max_exponent"] == summary["stages"]["square"]["exponent"]
    assert summary["stages"]["linear"]["seconds"] == [10.0, 31.0, 100.0]
    assert summary["largest_events"] == 10_000_000
    assert summary["largest_wall_s"] == 200.0 and summary["largest_peak_rss_mb"] == 900.0
    assert [s["events"] for s in summary["sizes"]] == [1_000_000, 3_000_000, 10_000_000]
    table = markdown(summary)
    assert "| square | 1.0 / 100 | 9.0 / 300 | 100.0 / 900 | 2.0 |" in table
    plot(summary, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_one_size_has_no_exponent():
    assert exponent([1_000], [5.0]) is None
    assert summarise([run(1_000, {"a": 1.0})])["max_exponent"] is None
