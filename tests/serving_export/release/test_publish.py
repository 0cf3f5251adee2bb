"""Publishing, rollback, prune, the CLI, and a writer killed half way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.release_synth import tiny_release_data
from conf.errors import (
    PublishError,
    ReleaseCorrupt,
    ReleaseGateFailed,
    ReleaseIncomplete,
    ReleaseNotFound,
)
from serving_export.release.publish import (
    current_release,
    list_releases,
    prune,
    publish,
    rollback,
    rollback_target,
)
from serving_export.release.writer import write_release
from tests.conftest import recpipe

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def root(tmp_path):
    return tmp_path / "releases"


def _write(root, *ids):
    base = datetime(2024, 1, 1, tzinfo=UTC)
    for i, rid in enumerate(ids):
        write_release(root, rid, tiny_release_data(), created_at=base + timedelta(hours=i))


def test_publish_points_current_and_rollback_walks_back(root):
    _write(root, "r1", "r2", "r3")
    assert current_release(root) is None
    assert publish(root, "r1") is None
    assert publish(root, "r2") == "r1"
    publish(root, "r3")
    assert (root / "CURRENT").read_text() == "r3\n"
    assert rollback_target(root) == "r2"
    assert rollback(root) == "r2"
    assert rollback(root) == "r1"  # a second rollback keeps going back, not forth
    with pytest.raises(PublishError, match="nothing to roll back"):
        rollback(root)
    assert rollback(root, "r3") == "r3"  # explicit target
    assert current_release(root) == "r3"


def test_publish_refuses_unservable_releases(root):
    _write(root, "ok")
    write_release(root, "failed", tiny_release_data(gate_passed=False))
    publish(root, "ok")
    with pytest.raises(ReleaseGateFailed, match="ndcg dropped"):
        publish(root, "failed")
    with pytest.raises(ReleaseNotFound):
        publish(root, "missing")
    _write(root, "broken")
    target = root / "broken/items/available.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0x01
    target.write_bytes(bytes(raw))
    with pytest.raises(ReleaseCorrupt):
        publish(root, "broken")
    (root / "broken/_SUCCESS").unlink()
    with pytest.raises(ReleaseIncomplete):
        publish(root, "broken")
    assert current_release(root) == "ok"


def test_prune_keeps_newest_current_and_rollback_target(root):
    _write(root, "r1", "r2", "r3", "r4", "r5")
    publish(root, "r1")
    publish(root, "r2")
    stale = root / "r9.tmp-abc"
    stale.mkdir()
    os.utime(stale, (time.time() - 10 * 3600,) * 2)
    fresh = root / "r8.tmp-def"
    fresh.mkdir()
    deleted = prune(root, keep=2)
    assert sorted(deleted) == ["r3", "r9.tmp-abc"]
    assert sorted(r.release_id for r in list_releases(root)) == ["r1", "r2", "r4", "r5"]
    assert fresh.exists()  # may be a build in progress
    with pytest.raises(ValueError, match="keep"):
        prune(root, keep=0)


def test_killed_writer_never_becomes_current(root):
    _write(root, "good")
    publish(root, "good")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from serving_export.release import writer as release_writer
        from serving_export.release.files import ReleaseFiles
        from bench.release_synth import tiny_release_data
        saved = []
        original = ReleaseFiles.save
        def slow_save(self, rel, array):
            original(self, rel, array)
            saved.append(rel)
            if len(saved) == 3:
                print("HALFWAY", flush=True)
                time.sleep(60)
        ReleaseFiles.save = slow_save
        release_writer.write_release({str(root)!r}, "half", tiny_release_data())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "HALFWAY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not (root / "half").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith("half.tmp-")]
    with pytest.raises(ReleaseNotFound):
        publish(root, "half")
    assert current_release(root) == "good"


def test_cli_list_show_publish_rollback_prune(root, capsys):
    _write(root, "r1", "r2")
    args = ["--releases-root", str(root)]
    assert recpipe(["release", *args, "publish", "r1"]) == 0
    assert recpipe(["release", *args, "publish", "r2"]) == 0
    capsys.readouterr()
    assert recpipe(["release", *args, "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("  r1") and out[1].startswith("* r2")
    assert recpipe(["release", *args, "show", "r1"]) == 0
    assert '"release_id": "r1"' in capsys.readouterr().out
    assert recpipe(["release", *args, "rollback"]) == 0
    assert current_release(root) == "r1"
    assert recpipe(["release", *args, "prune", "--keep", "1"]) == 0
    assert {p.name for p in root.iterdir() if p.is_dir()} == {"r1", "r2"}  # both protected
    assert recpipe(["release", *args, "publish", "nope"]) == 2
    assert "not found" in capsys.readouterr().err
    assert recpipe(["release", *args, "prune", "--keep", "0"]) == 2
