"""``recpipe serve --workers 2``: two processes on one port share the release through the
page cache and the real-time state through a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.redis_server import RedisServer, free_port, redis_binary
from bench.release_synth import tiny_release_data
from serving_export.release.publish import publish
from serving_export.release.writer import write_release
from serving_export.service.spool import read_spool
from tests.conftest import REPO, recpipe, require
from tests.serving_export.service.test_service import KEY, ids

pytestmark = pytest.mark.redis

TABLE = "topn/home_feed/items.npy"


def smaps_entry(pid: int, suffix: str) -> dict[str, int]:
    """The kB figures of the process's mapping of the file ending in ``suffix``."""
    lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    for k, line in enumerate(lines):
        if line.split()[-1].endswith(suffix):
            out = {}
            for field in lines[k + 1:k + 25]:
                name, _, rest = field.partition(":")
                if rest.strip().endswith("kB"):
                    out[name] = int(rest.split()[0])
                elif not name[:1].isupper():
                    break
            return out
    raise AssertionError(f"process {pid} does not map {suffix}")


def client_on(url: str, pid: int, others: list[httpx.Client]) -> httpx.Client:
    """A keep-alive connection the worker ``pid`` accepted (new connections until one is)."""
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=5)
        if client.get("/healthz").json()["worker"] == pid:
            return client
        others.append(client)  # held open, so the next connection may go elsewhere
    raise AssertionError(f"no connection reached worker {pid}")


def test_more_than_one_worker_needs_redis(tmp_path, capsys):
    code = recpipe(["serve", "--workers", "2", "--releases-root", str(tmp_path)])
    assert code == 2
    assert "redis_url" in capsys.readouterr().err


def test_two_workers_share_the_release_and_the_real_time_store(tmp_path):
    require(redis_binary() is not None, "redis-server binary not installed "
            "(apt-get install redis-server; make test installs it)")
    root = tmp_path / "releases"
    write_release(root, "r1", tiny_release_data())
    publish(root, "r1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with RedisServer(tmp_path / "redis") as redis:
        env = {**os.environ, "PYTHONPATH": str(REPO), "RECPIPE_SERVING__API_KEY": KEY,
               "RECPIPE_SERVING__RELOAD_POLL_S": "0.1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "recpipe", "serve", "--workers", "2", "--port", str(port),
             "--releases-root", str(root), "--redis-url", redis.url,
             "--spool-dir", str(tmp_path / "spool")], env=env, cwd=str(tmp_path),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        held: list[httpx.Client] = []
        try:
            workers: set[int] = set()
            deadline = time.monotonic() + 60
            while len(workers) < 2:
                assert time.monotonic() < deadline, "two ready workers within 60 s"
                assert proc.poll() is None, proc.stderr.read()
                try:
                    with httpx.Client(base_url=url, timeout=2) as probe:
                        r = probe.get("/readyz")
                        if r.status_code == 200:
                            workers.add(r.json()["worker"])
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert proc.pid not in workers
            first, second = sorted(workers)
            a, b = client_on(url, first, held), client_on(url, second, held)
            held += [a, b]
            user = "/recommendations/users/alice"
            for client in (a, b):
                assert ids(client.get(user, params={"n": 3}).json()) == ["i1", "i3", "i5"]
            # a click taken by one worker is suppressed in the other's next answer
            r = a.post("/events/interactions", headers={"X-API-Key": KEY},
                       json={"events": [{"user_id": "alice", "item_id": "i1",
                                         "event_type": "click", "event_id": "w-1"}]})
            assert r.status_code == 202 and r.json()["degraded"] is False
            assert "i1" not in ids(b.get(user, params={"n": 3}).json())
            r = b.post("/events/interactions", headers={"X-API-Key": KEY},
                       json={"events": [{"user_id": "bob", "item_id": "i3",
                                         "event_type": "click", "event_id": "w-2"}]})
            assert r.status_code == 202
            # both map the release's tables from the file, pages shared, no private copy
            for pid in (first, second):
                table = smaps_entry(pid, TABLE)
                assert table["Anonymous"] == 0 and table["Private_Dirty"] == 0, table
                assert table["Shared_Clean"] > 0, table  # the pages both read
            # metrics add both workers' answers up
            metrics = a.get("/metrics").text
            events = [line for line in metrics.splitlines()
                      if line.startswith("recpipe_events_accepted_total")]
            assert sum(float(line.split()[-1]) for line in events) == 2.0, events
            assert metrics.count('recpipe_release_info{') >= 2
        finally:
            for client in held:
                client.close()
            proc.terminate()
            proc.wait(timeout=20)
    # each worker spooled its own event; both are durable after shutdown
    spooled = {e["event_id"] for e in read_spool(tmp_path / "spool", include_open=True)}
    assert {"w-1", "w-2"} <= spooled
