"""The service producing accepted events to a real Kafka broker, and its fallback spool."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bench.release_synth import tiny_release_data
from bench.server_thread import ServerThread
from jobs.stream import ensure_topic
from serving_export.release.publish import publish
from serving_export.release.writer import write_release
from serving_export.service import create_app
from serving_export.service.spool import read_spool
from tests.serving_export.service.test_service import KEY, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def read_topic(cfg, expected: int, timeout_s: float = 30.0) -> list:
    """Every message of the topic (from the start), waiting until ``expected`` arrived."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": cfg.kafka_bootstrap, "group.id": "reader-"
                         + str(time.monotonic_ns()), "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([cfg.topic])
    msgs, deadline = [], time.monotonic() + timeout_s
    try:
        while len(msgs) < expected and time.monotonic() < deadline:
            msgs += [m for m in consumer.consume(1000, 0.5) if not m.error()]
    finally:
        consumer.close()
    return msgs


def post(srv, events):
    return httpx.post(srv.url + "/events/interactions", headers={"X-API-Key": KEY},
                      json={"events": events}, timeout=30)


def event(n: int, user: str = "alice") -> dict:
    return {"event_id": f"e{n}", "user_id": user, "item_id": f"i{n % 7}",
            "event_type": "click", "ts": "2026-12-01T10:00:00Z"}


def test_events_go_to_the_topic_keyed_by_user_and_to_the_spool_while_the_broker_is_down(
        kafka, topic_settings, tmp_path):
    ensure_topic(topic_settings)
    settings = settings_for(tmp_path)
    write_release(settings.releases_root, "r1", tiny_release_data())
    publish(settings.releases_root, "r1")
    with ServerThread(create_app(settings, stream=topic_settings)) as srv:
        r = post(srv, [event(1), event(2, "bob")])
        assert r.status_code == 202 and r.json()["accepted"] == 2
        msgs = read_topic(topic_settings, 2)
        assert sorted((m.key(), json.loads(m.value())["event_id"]) for m in msgs) == [
            (b"alice", "e1"), (b"bob", "e2")]
        assert json.loads(msgs[0].value())["ts"] == "2026-12-01T10:00:00Z"
        assert not list(read_spool(settings.spool_dir, include_open=True))

        kafka.kill()
        try:
            r = post(srv, [event(3), event(4)])  # waits for the timeout, then spools
            assert r.status_code == 202
            r = post(srv, [event(5)])  # broker known down: straight to the spool
            assert r.status_code == 202
            spooled = {e["event_id"] for e in read_spool(topic_settings.fallback_dir,
                                                          include_open=True)}
            assert spooled == {"e3", "e4", "e5"}
        finally:
            kafka.start()
        deadline = time.monotonic() + 60
        while (list(read_spool(topic_settings.fallback_dir, include_open=True))
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert not list(read_spool(topic_settings.fallback_dir, include_open=True))
        r = post(srv, [event(6)])
        assert r.status_code == 202
        ids = {json.loads(m.value())["event_id"] for m in read_topic(topic_settings, 6)}
        assert ids == {"e1", "e2", "e3", "e4", "e5", "e6"}
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'recpipe_event_paths_total{path="drained"} 3.0' in metrics
        assert 'recpipe_event_paths_total{path="spool"} 3.0' in metrics
