"""The durable event spool."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from serving_export.service.spool import EventSpool, GroupCommitSpool, read_spool, spool_files


def _event(k: int) -> dict:
    return {"event_id": f"e{k}", "user_id": "u1", "item_id": f"i{k}", "event_type": "click",
            "value": None, "ts": "2024-01-01T00:00:00Z", "surface": "home_feed"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_events_are_appended_and_read_back_in_order(tmp_path):
    spool = EventSpool(tmp_path, rotate_bytes=1 << 20, rotate_s=3600)
    spool.append([_event(1), _event(2)])
    spool.append([_event(3)])
    # still open: durable on disk, not yet offered to ingest
    assert [e["event_id"] for e in read_spool(tmp_path, include_open=True)] == ["e1", "e2", "e3"]
    assert list(read_spool(tmp_path)) == []
    closed = spool.close()
    assert closed is not None and closed.name.endswith(".jsonl")
    lines = closed.read_text().splitlines()
    assert json.loads(lines[0]) == _event(1)
    assert set(json.loads(lines[0])) == {"event_id", "user_id", "item_id", "event_type",
                                         "value", "ts", "surface"}


def test_rotation_by_size_and_age_gives_time_sorted_files(tmp_path):
    clock = Clock()
    line_bytes = len(json.dumps(_event(1), separators=(",", ":"))) + 1
    spool = EventSpool(tmp_path, rotate_bytes=2 * line_bytes, rotate_s=60, clock=clock)
    for k in range(5):  # 2 lines per file: files of 2, 2, 1 lines
        clock.now += 1
        spool.append([_event(k)])
    clock.now += 61
    assert spool.maybe_rotate() is not None
    files = spool_files(tmp_path)
    assert [len(f.read_text().splitlines()) for f in files] == [2, 2, 1]
    assert files == sorted(files)
    assert [e["event_id"] for e in read_spool(tmp_path)] == [f"e{k}" for k in range(5)]


def test_leftover_file_of_dead_process_is_sealed_without_torn_line(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    left = tmp_path / f"events-20240101T000000.000000Z-{pid}-000001.jsonl.open"
    left.write_text(json.dumps(_event(1)) + "\n" + '{"event_id": "e2", "us')
    EventSpool(tmp_path, rotate_bytes=1 << 20, rotate_s=60)
    assert not left.exists()
    assert [e["event_id"] for e in read_spool(tmp_path)] == ["e1"]


def test_concurrent_appends_share_fsyncs_and_lose_nothing(tmp_path):
    spool = EventSpool(tmp_path, rotate_bytes=1 << 20, rotate_s=3600)
    calls = []
    original = spool.append

    def counting(records):
        calls.append(len(records))
        original(records)

    spool.append = counting
    front = GroupCommitSpool(spool)

    async def many():
        await asyncio.gather(*(front.append([_event(k)]) for k in range(50)))

    asyncio.run(many())
    spool.close()
    assert sorted(e["event_id"] for e in read_spool(tmp_path)) == sorted(
        f"e{k}" for k in range(50))
    assert sum(calls) == 50 and len(calls) < 50


def test_bad_rotation_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="rotate_bytes"):
        EventSpool(tmp_path, rotate_bytes=0, rotate_s=1)
