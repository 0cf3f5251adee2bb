"""The hourly ingest on a tiny inline lake: spool files, claims, one batch per hour."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conf.errors import SourceError
from jobs.hourly import claim, ingest_step, spool_files
from jobs.lake import Lake

BASE_DS = "2024-01-01"
DS, HOUR = "2024-01-02", 11
ITEMS = ["i1", "i2", "i3", "i4", "i5", "i6"]
ITEM_VECS = np.array([[1.0, 0.0], [0.9, 0.2], [0.8, 0.5], [0.1, 1.0], [0.0, 0.9],
                      [-0.5, 0.5]], np.float32)
BASE_ID = "2024-01-01-base"


def _t(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- spool files and claims -------------------------------------------------------------------
def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _event(eid, user, item, etype="click", ts="2024-01-02T10:00:00Z", value=None):
    return {"event_id": eid, "user_id": user, "item_id": item, "event_type": etype,
            "value": value, "ts": ts, "surface": "home_feed"}


def test_spool_files_skip_the_open_file_hidden_files_and_missing_folders(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    _jsonl(spool / "events-20240102T100000.000000Z-1-000001.jsonl", [_event("e1", "u", "i")])
    _jsonl(spool / "events-20240102T100500.000000Z-1-000002.jsonl.open", [_event("e2", "u", "i")])
    _jsonl(spool / ".partial.jsonl", [_event("e3", "u", "i")])
    (tmp_path / "empty").mkdir()
    files = spool_files([spool, tmp_path / "empty", tmp_path / "missing"])
    assert [p.name for p in files] == ["events-20240102T100000.000000Z-1-000001.jsonl"]


def test_spool_files_refuse_two_files_of_one_name(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        _jsonl(tmp_path / d / "events-1.jsonl", [_event("e1", "u", "i")])
    with pytest.raises(SourceError, match="events-1.jsonl"):
        spool_files([tmp_path / "a", tmp_path / "b"])


def _ledger(rows):
    return pa.table({"file": [r[0] for r in rows], "bytes": [1] * len(rows),
                     "batch": ["b"] * len(rows), "hour": pa.array([r[2] for r in rows], pa.int32()),
                     "ds": [r[1] for r in rows]})


def test_claim_takes_unclaimed_files_and_a_rerun_takes_its_own_again():
    files = [Path(f"/s/f{i}.jsonl") for i in range(4)]
    ledger = _ledger([("f0.jsonl", DS, 9), ("f1.jsonl", DS, 10), ("f9.jsonl", DS, 10)])
    got, missing, rerun = claim(ledger, files, DS, 11)
    assert ([p.name for p in got], missing, rerun) == (["f2.jsonl", "f3.jsonl"], [], False)
    got, missing, rerun = claim(ledger, files, DS, 10)
    assert ([p.name for p in got], missing, rerun) == (["f1.jsonl"], ["f9.jsonl"], True)
    got, _, rerun = claim(ledger, files, "2024-01-03", 10)
    assert [p.name for p in got] == ["f2.jsonl", "f3.jsonl"] and not rerun


@pytest.mark.spark
def test_ingest_step_reads_closed_files_once_per_hour(spark, hourly_settings, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    _jsonl(spool / "events-a.jsonl", [_event("e1", "u1", "i3"), _event("e2", "u2", "i4")])
    _jsonl(spool / "events-b.jsonl.open", [_event("e3", "u1", "i5")])
    first = ingest_step(spark, hourly_settings, DS, 10, [spool])
    assert (first["files"], first["accepted"], first["rerun"]) == (1, 2, False)
    lake = Lake(hourly_settings)
    assert sorted(lake.read_arrow("silver/interactions").column("event_id").to_pylist()) == \
        ["e1", "e2"]
    again = ingest_step(spark, hourly_settings, DS, 10, [spool])  # a retry of the same hour
    assert again["rerun"] and again["batch"] == first["batch"]
    assert lake.read_arrow("bronze/events").num_rows == 2
    # the service seals its file; the next hour takes only that one
    os.replace(spool / "events-b.jsonl.open", spool / "events-b.jsonl")
    nxt = ingest_step(spark, hourly_settings, DS, 11, [spool])
    assert (nxt["files"], nxt["accepted"]) == (1, 1)
    assert lake.read_arrow("bronze/events").num_rows == 3
    ledger = lake.read_arrow("ops/hourly_files").to_pylist()
    assert sorted((r["file"], r["hour"]) for r in ledger) == [("events-a.jsonl", 10),
                                                              ("events-b.jsonl", 11)]
    assert ingest_step(spark, hourly_settings, DS, 12, [spool])["files"] == 0


@pytest.fixture
def hourly_settings(tmp_path):
    from conf import load_settings

    return load_settings(overrides={
        "lake_root": str(tmp_path / "lake"), "data_dir": str(tmp_path / "data"),
        "spark": {"shuffle_partitions": 2}, "als": {"factors": 2},
        "serving": {"releases_root": str(tmp_path / "releases")},
    })
