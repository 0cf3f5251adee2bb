"""Freshness end to end: a click posted to the service changes that user's recommendations
after one hourly run (spool -> ingest -> fold-in -> incremental release -> hot reload).

Runs on a copy of the nightly MovieLens 100K lake and releases (the shared nightly run stays
untouched for the other e2e tests). Prints the seconds from the POST to the changed answer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conf import load_settings

from .conftest import BIN, REPO, run_checked

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOURLY_DS, HOUR = "1998-04-23", 11  # the day after the nightly; the click is at 10:30
KEY = "hourly-e2e-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError):
        return 0, {}


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
        return json.loads(resp.read())


def _wait(predicate, timeout_s: float, what: str, step_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def _stored(release, surface: str, user: str) -> list[str]:
    return [release.item_id(int(i)) for i in release.topn(surface, release.user_row(user))[0]]


@pytest.fixture
def copied_pipeline(nightly_run, tmp_path):
    """The nightly run's lake, ranker exports and releases, copied; env pointing at them."""
    env, _ = nightly_run
    nightly = load_settings(environ=env)
    lake = Path(nightly.resolve(nightly.lake_root))
    shutil.copytree(lake, tmp_path / "lake")
    if (lake.parent / "models").is_dir():  # the ranker exports live beside the lake
        shutil.copytree(lake.parent / "models", tmp_path / "models")
    shutil.copytree(nightly.serving.releases_root, tmp_path / "releases")
    env = {**env,
           "RECPIPE_LAKE_ROOT": str(tmp_path / "lake"),
           "RECPIPE_RUNS_DIR": str(tmp_path / "runs"),
           "RECPIPE_SERVING__RELEASES_ROOT": str(tmp_path / "releases"),
           "RECPIPE_SERVING__SPOOL_DIR": str(tmp_path / "spool"),
           "RECPIPE_SERVING__API_KEY": KEY,
           "RECPIPE_SERVING__SPOOL_ROTATE_S": "1",    # seal the spool file within a second
           "RECPIPE_SERVING__RELOAD_POLL_S": "0.5"}
    return env, tmp_path


@pytest.fixture
def service(copied_pipeline):
    """``recpipe serve`` on a loopback port over the copied releases; yields its base URL."""
    env, tmp = copied_pipeline
    port = _free_port()
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen([str(BIN / "recpipe"), "serve", "--port", str(port)], env=env,
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is not None or _get(f"{url}/readyz")[0] == 200, 120,
              "the service to be ready")
        assert proc.poll() is None, (tmp / "serve.log").read_text()[-3000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_click_changes_the_users_recommendations_after_the_hourly_run(
        copied_pipeline, service):
    from serving_export.release.publish import current_release
    from serving_export.release.reader import load_release

    env, tmp = copied_pipeline
    root = tmp / "releases"
    base_id = current_release(root)
    base = load_release(root / base_id)
    user, other = "1", "2"
    before = _get(f"{service}/recommendations/users/{user}?n=20")[1]
    assert before["release_id"] == base_id and before["source"] == "personalized"
    clicked = before["items"][0]["item_id"]
    assert clicked in _stored(base, "home_feed", user)

    posted_at = time.perf_counter()
    _post(f"{service}/events/interactions", {"events": [{
        "user_id": user, "item_id": clicked, "event_type": "click",
        "ts": f"{HOURLY_DS}T10:30:00Z", "surface": "home_feed"}]})
    spool = Path(env["RECPIPE_SERVING__SPOOL_DIR"])
    _wait(lambda: list(spool.glob("events-*.jsonl")), 30, "the service to seal its spool file")
    run_checked([str(BIN / "recpipe"), "run", "hourly", "--date", HOURLY_DS, "--hour",
                 str(HOUR), "--spool", str(spool)], env, tmp / "hourly.log")

    def changed():
        status, body = _get(f"{service}/recommendations/users/{user}?n=20")
        return body if status == 200 and body["release_id"] != base_id else None

    after = _wait(changed, 60, "the service to load the hourly release")
    seconds = time.perf_counter() - posted_at
    print(f"\nfreshness: POST /events/interactions -> changed answer in {seconds:.1f} s "
          f"(release {base_id} -> {after['release_id']})")

    live = current_release(root)
    assert after["release_id"] == live != base_id
    hourly = load_release(root / live)
    assert hourly.manifest["parent"] == base_id
    assert hourly.manifest["extra"]["hourly"]["users"] == 1
    # the answer and the stored list changed, and the clicked item is in neither
    served = [i["item_id"] for i in after["items"]]
    assert clicked not in served and served != [i["item_id"] for i in before["items"]]
    for surface in hourly.surfaces:
        assert clicked not in _stored(hourly, surface, user)
    assert _stored(hourly, "home_feed", user) != _stored(base, "home_feed", user)
    # everyone else keeps the nightly lists; the item side is the nightly's files, linked
    assert _stored(hourly, "home_feed", other) == _stored(base, "home_feed", other)
    for name in ("items/ids.npy", "items/vectors.npy", "similar/items.npy"):
        assert os.stat(root / live / name).st_ino == os.stat(root / base_id / name).st_ino
