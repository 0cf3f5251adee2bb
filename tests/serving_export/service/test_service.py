"""The lookup service over HTTP (uvicorn on loopback) with the in-process store."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest

from bench.release_synth import tiny_release_data
from bench.server_thread import ServerThread
from conf import load_settings
from serving_export.release.publish import publish
from serving_export.release.writer import write_release
from serving_export.service import create_app

KEY = "s3cret"


def settings_for(tmp_path, **extra):
    serving = {"releases_root": str(tmp_path / "releases"), "spool_dir": str(tmp_path / "spool"),
               "api_key": KEY, "reload_poll_s": 0.05, "blend_share": 0.2, "blend_seeds": 3,
               "blend_per_seed": 10, "max_n": 50, "max_batch_users": 3,
               "max_rerank_items": 5, "max_events": 4, "max_body_bytes": 2000, **extra}
    return load_settings(overrides={"serving": serving}, environ={}).serving


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("service")
    settings = settings_for(tmp_path)
    write_release(settings.releases_root, "r1", tiny_release_data())
    publish(settings.releases_root, "r1")
    with ServerThread(create_app(settings)) as srv:
        srv.settings = settings
        yield srv


def get(server, path, **params):
    return httpx.get(server.url + path, params=params, timeout=5)


def ids(body):
    return [i["item_id"] for i in body["items"]]


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if code:
        assert error["code"] == code
    assert "Traceback" not in response.text


def test_personalized_answer_drops_purchased_and_unavailable(server):
    body = get(server, "/recommendations/users/alice", n=3).json()
    # alice: i1 .9, i2 (bought), i3 .7, i4 (unavailable), i5 .5
    assert ids(body) == ["i1", "i3", "i5"]
    assert body["source"] == "personalized" and body["degraded"] is False
    assert body["release_id"] == "r1" and body["surface"] == "home_feed"
    assert body["items"][0]["score"] == pytest.approx(0.9)
    assert body["items"][0]["retrieval"] == ["als"]


def test_filters_categories_ids_and_availability(server):
    drama = json.dumps({"include_categories": ["drama"]})
    # i3, i6 are drama; no popular item fills (young: i8 comedy, i6 taken; overall: none)
    assert ids(get(server, "/recommendations/users/alice", n=3, filters=drama).json()) == [
        "i3", "i6"]
    flt = json.dumps({"exclude_item_ids": ["i1"], "available_only": False})
    assert ids(get(server, "/recommendations/users/alice", n=3, filters=flt).json()) == [
        "i3", "i4", "i5"]
    flt = json.dumps({"exclude_categories": ["comedy"], "exclude_purchased": False})
    assert ids(get(server, "/recommendations/users/alice", n=2, filters=flt).json()) == [
        "i2", "i6"]
    nothing = json.dumps({"include_categories": ["no-such-category"]})
    assert ids(get(server, "/recommendations/users/alice", filters=nothing).json()) == []


def test_short_list_is_filled_from_popular(server):
    body = get(server, "/recommendations/users/bob", n=4).json()
    # bob: i3, i1; then overall popular i7, i8
    assert ids(body) == ["i3", "i1", "i7", "i8"]
    assert [i["source"] for i in body["items"]] == ["personalized"] * 2 + ["popular"] * 2


def test_cold_users_get_segment_then_overall_popular(server):
    carol = get(server, "/recommendations/users/carol", n=3).json()
    assert carol["source"] == "popular" and ids(carol) == ["i8", "i6", "i7"]
    assert [i["reason"] for i in carol["items"]] == [
        "popular with people like you"] * 2 + ["popular right now"]
    unknown = get(server, "/recommendations/users/zed", n=2).json()
    assert unknown["source"] == "popular" and ids(unknown) == ["i7", "i8"]
    assert {i["reason"] for i in unknown["items"]} == {"popular right now"}


def test_email_surface_and_similar_items(server):
    # email i6, i5; filled from young (i8) then overall (i7, i1; i2 bought)
    assert ids(get(server, "/recommendations/users/alice", surface="email").json()) == [
        "i6", "i5", "i8", "i7", "i1"]
    body = get(server, "/recommendations/items/i1/similar", n=2).json()
    assert body["source"] == "similar" and ids(body) == ["i5", "i8"]
    # i4 has no similar list: overall popular, never i4 itself
    body = get(server, "/recommendations/items/i4/similar", n=2).json()
    assert body["source"] == "popular" and ids(body) == ["i7", "i8"]


def test_batch_answers_each_user_in_order(server):
    r = httpx.post(server.url + "/recommendations/batch",
                   json={"user_ids": ["bob", "zed"], "surface": "home_feed", "n": 2}, timeout=5)
    body = r.json()
    assert [res["user_id"] for res in body["results"]] == ["bob", "zed"]
    assert [ids(res) for res in body["results"]] == [["i3", "i1"], ["i7", "i8"]]
    assert [res["source"] for res in body["results"]] == ["personalized", "popular"]


def test_rerank_orders_by_dot_product_unknown_last(server):
    r = httpx.post(server.url + "/recommendations/rerank",
                   json={"user_id": "alice", "item_ids": ["i3", "i1", "zz", "i2", "i4"]})
    body = r.json()
    # alice [1,0]: i1 1.0, i2 .5, i3 0; zz unknown, i4 has no vector
    assert body["source"] == "reranked"
    assert ids(body) == ["i1", "i2", "i3", "zz", "i4"]
    assert [i["known"] for i in body["items"]] == [True, True, True, False, False]
    assert [i["score"] for i in body["items"]] == pytest.approx([1.0, 0.5, 0.0, None, None])
    r = httpx.post(server.url + "/recommendations/rerank",
                   json={"user_id": "zed", "item_ids": ["i1", "i7", "zz", "i3"]})
    body = r.json()
    assert body["source"] == "popular" and ids(body) == ["i7", "i1", "i3", "zz"]


def test_events_need_the_api_key_and_are_spooled(server):
    event = {"events": [{"user_id": "bob", "item_id": "i3", "event_type": "click",
                         "event_id": "ev-1", "ts": "2024-01-01T10:00:00"}]}
    url = server.url + "/events/interactions"
    assert_error(httpx.post(url, json=event), 401, "unauthorized")
    assert_error(httpx.post(url, json=event, headers={"X-API-Key": "wrong"}), 401)
    r = httpx.post(url, json=event, headers={"X-API-Key": KEY})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "event_ids": ["ev-1"], "degraded": False}
    # bob clicked i3: it leaves his list; i3 seeds no similar items, so no blend
    assert ids(get(server, "/recommendations/users/bob", n=2).json()) == ["i1", "i7"]
    from serving_export.service.spool import read_spool
    events = list(read_spool(server.settings.spool_dir, include_open=True))
    assert {"event_id": "ev-1", "user_id": "bob", "item_id": "i3", "event_type": "click",
            "value": None, "ts": "2024-01-01T10:00:00Z", "surface": None} in events


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("/recommendations/users/alice", {"n": 0}, 422, "validation_error"),
    ("/recommendations/users/alice", {"n": 51}, 422, "validation_error"),
    ("/recommendations/users/alice", {"n": "ten"}, 422, "validation_error"),
    ("/recommendations/users/alice", {"surface": "sms"}, 422, "unknown_surface"),
    ("/recommendations/users/alice", {"filters": "{not json"}, 400, "invalid_filters"),
    ("/recommendations/users/alice", {"filters": '{"colour": "red"}'}, 422, "invalid_filters"),
    ("/recommendations/users/alice", {"filters": "[1, 2]"}, 422, "invalid_filters"),
    ("/recommendations/users/alice", {"filters": '{"available_only": "maybe"}'}, 422,
     "invalid_filters"),
    ("/recommendations/users/" + "u" * 129, {}, 422, "validation_error"),
    ("/recommendations/items/nope/similar", {}, 404, "unknown_item"),
    ("/recommendations/items/i1/similar", {"n": 1000}, 422, "validation_error"),
    ("/no/such/path", {}, 404, "not_found"),
])
def test_bad_get_requests_get_json_4xx(server, path, params, status, code):
    assert_error(get(server, path, **params), status, code)


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/recommendations/batch", b"{bad json", 400, "invalid_json"),
    ("/recommendations/batch", {"user_ids": []}, 422, "validation_error"),
    ("/recommendations/batch", {"user_ids": ["a", "b", "c", "d"]}, 422, "too_many_users"),
    ("/recommendations/batch", {"user_ids": ["a"], "surface": "sms"}, 422, "unknown_surface"),
    ("/recommendations/batch", {"user_ids": ["a"], "n": 51}, 422, "validation_error"),
    ("/recommendations/batch", {"user_ids": ["a"], "filters": {"x": 1}}, 422,
     "validation_error"),
    ("/recommendations/rerank", {"user_id": "a", "item_ids": ["1"] * 6}, 422, "too_many_items"),
    ("/recommendations/rerank", {"user_id": "", "item_ids": ["1"]}, 422, "validation_error"),
    ("/events/interactions", b"{bad json", 400, "invalid_json"),
    ("/events/interactions", {"events": [{"user_id": "u", "item_id": "i",
                                          "event_type": "teleport"}]}, 422, "validation_error"),
    ("/events/interactions", {"events": [{"user_id": "u", "item_id": "i", "event_type": "rating",
                                          "value": "NaN"}]}, 422, "validation_error"),
    ("/events/interactions", {"events": [{"user_id": "u", "item_id": "i",
                                          "event_type": "click"}] * 5}, 422, "too_many_events"),
    ("/events/interactions", {"events": []}, 422, "validation_error"),
])
def test_bad_post_requests_get_json_4xx(server, path, body, status, code):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(server.url + path, headers={"X-API-Key": KEY,
                                               "content-type": "application/json"}, **kwargs)
    assert_error(r, status, code)


def test_oversized_bodies_are_refused_with_or_without_length(server):
    big = json.dumps({"user_ids": ["x" * 100] * 30}).encode()
    assert_error(httpx.post(server.url + "/recommendations/batch", content=big,
                            headers={"content-type": "application/json"}), 413,
                 "body_too_large")

    def chunks():
        for _ in range(10):
            yield b" " * 500

    r = httpx.post(server.url + "/events/interactions", content=chunks(),
                   headers={"X-API-Key": KEY, "content-type": "application/json"})
    assert_error(r, 413, "body_too_large")


def test_health_readiness_metrics_and_docs(server):
    assert get(server, "/healthz").json() == {"status": "ok", "worker": os.getpid()}
    ready = get(server, "/readyz").json()
    assert ready["status"] == "ready" and ready["release_id"] == "r1"
    assert ready["worker"] == os.getpid()  # the service runs in this process's thread
    metrics = get(server, "/metrics").text
    assert 'recpipe_release_info{release_id="r1"} 1.0' in metrics
    assert 'recpipe_request_seconds_count{endpoint="user"}' in metrics
    assert "recpipe_fallbacks_total" in metrics
    schema = get(server, "/openapi.json").json()
    assert "/recommendations/users/{user_id}" in schema["paths"]
    assert "include_categories" in schema["components"]["schemas"]["Filters"]["properties"]


def test_not_ready_without_a_release(tmp_path):
    settings = settings_for(tmp_path)
    with ServerThread(create_app(settings), wait_ready_s=0) as srv:
        assert httpx.get(srv.url + "/readyz").status_code == 503
        assert_error(httpx.get(srv.url + "/recommendations/users/alice"), 503, "no_release")
        assert httpx.get(srv.url + "/healthz").status_code == 200


def test_hot_swap_under_load_and_corrupt_release_refused(tmp_path):
    settings = settings_for(tmp_path)
    root = settings.releases_root
    write_release(root, "r1", tiny_release_data())
    write_release(root, "r2", tiny_release_data(score_shift=1.0))
    write_release(root, "r3", tiny_release_data(score_shift=2.0))
    publish(root, "r1")
    with ServerThread(create_app(settings)) as srv:
        seen: dict[str, int] = {}
        statuses: dict[int, int] = {}

        async def hammer(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(base_url=srv.url, timeout=5) as client:
                while not stop.is_set():
                    r = await client.get("/recommendations/users/alice", params={"n": 3})
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        body = r.json()
                        seen[body["release_id"]] = seen.get(body["release_id"], 0) + 1
                        assert ids(body) == ["i1", "i3", "i5"]

        async def scenario() -> None:
            stop = asyncio.Event()
            workers = [asyncio.create_task(hammer(stop)) for _ in range(8)]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(publish, root, "r2")
            await asyncio.to_thread(srv.wait_ready, 10, "r2")
            await asyncio.sleep(0.3)
            # r3 is corrupted after it was checked: the service must refuse it
            target = tmp_path / "releases/r3/topn/home_feed/scores.npy"
            raw = bytearray(target.read_bytes())
            raw[-1] ^= 0xFF
            target.write_bytes(bytes(raw))
            (tmp_path / "releases/CURRENT").write_text("r3\n")
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)

        asyncio.run(scenario())
        assert set(statuses) == {200}, statuses
        assert seen.get("r1", 0) > 0 and seen.get("r2", 0) > 0 and "r3" not in seen
        assert srv.wait_ready(1)["release_id"] == "r2"
        metrics = httpx.get(srv.url + "/metrics").text
        assert "recpipe_release_reload_failures_total 1.0" in metrics


def test_api_key_comes_from_the_environment():
    settings = load_settings(environ={"RECPIPE_SERVING__API_KEY": "12345"}).serving
    assert settings.api_key.get_secret_value() == "12345"
    assert "12345" not in repr(settings)
    assert load_settings(environ={}).serving.api_key is None
