"""The service with a real redis-server as its real-time store."""

from __future__ import annotations

import httpx
import pytest

from bench.redis_server import RedisServer, redis_binary
from bench.release_synth import tiny_release_data
from bench.server_thread import ServerThread
from serving_export.release.publish import publish
from serving_export.release.writer import write_release
from serving_export.service import create_app
from serving_export.service.spool import read_spool
from tests.conftest import require
from tests.serving_export.service.test_service import KEY, ids, settings_for

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _redis_installed():
    require(redis_binary() is not None, "redis-server binary not installed "
            "(apt-get install redis-server; make test installs it)")


def test_click_hides_item_blends_similar_and_survives_redis_outage(tmp_path):
    redis = RedisServer(tmp_path / "redis")
    try:
        settings = settings_for(tmp_path, redis_url=redis.url, redis_timeout_s=0.2,
                                redis_retry_s=0.5)
        write_release(settings.releases_root, "r1", tiny_release_data())
        publish(settings.releases_root, "r1")
        with ServerThread(create_app(settings)) as srv:
            url = srv.url + "/recommendations/users/alice"
            assert ids(httpx.get(url, params={"n": 3}).json()) == ["i1", "i3", "i5"]
            r = httpx.post(srv.url + "/events/interactions", headers={"X-API-Key": KEY},
                           json={"events": [{"user_id": "alice", "item_id": "i1",
                                             "event_type": "click"}]})
            assert r.status_code == 202 and r.json()["degraded"] is False
            body = httpx.get(url, params={"n": 3}).json()
            # i1 clicked: gone. 2 slots from the list (i3, i5), 1 blended from i1's similar
            # items (i5 taken, so i8), placed last (every 3rd slot)
            assert ids(body) == ["i3", "i5", "i8"]
            assert [i["source"] for i in body["items"]] == [
                "personalized", "personalized", "similar"]
            assert body["degraded"] is False

            redis.stop()
            body = httpx.get(url, params={"n": 3}).json()
            assert body["degraded"] is True
            assert ids(body) == ["i1", "i3", "i5"]  # no real-time data: precomputed list
            batch = httpx.post(srv.url + "/recommendations/batch",
                               json={"user_ids": ["alice", "zed"], "n": 2,
                                     "surface": "home_feed"}).json()
            assert batch["degraded"] is True
            assert [ids(res) for res in batch["results"]] == [["i1", "i3"], ["i7", "i8"]]
            r = httpx.post(srv.url + "/events/interactions", headers={"X-API-Key": KEY},
                           json={"events": [{"user_id": "alice", "item_id": "i3",
                                             "event_type": "purchase", "event_id": "late"}]})
            assert r.status_code == 202 and r.json()["degraded"] is True
            assert "late" in {e["event_id"] for e in read_spool(settings.spool_dir,
                                                                include_open=True)}
            assert httpx.get(srv.url + "/readyz").status_code == 200
            metrics = httpx.get(srv.url + "/metrics").text
            assert 'recpipe_degraded_answers_total{endpoint="user"} 1.0' in metrics
    finally:
        redis.stop()
