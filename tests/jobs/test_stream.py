"""``recpipe consume`` against a real Kafka broker and real Delta tables: batches land in
silver once, bad rows are quarantined, and offsets move only after the Delta commit."""

from __future__ import annotations

import json

import pytest

import jobs.ingest
from jobs.lake import Lake
from jobs.stream import consume, ensure_topic
from tests.conftest import recpipe

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]
DS = "2026-12-01"


def event(n: int) -> dict:
    return {"event_id": f"e{n}", "user_id": f"u{n % 5}", "item_id": f"i{n % 11}",
            "event_type": "click", "value": None, "ts": "2026-12-01T10:00:00Z",
            "surface": None}


def produce(cfg, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cfg.kafka_bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(cfg.topic, value, f"u{i % 5}".encode())
    assert producer.flush(30) == 0


def silver_ids(settings) -> list[str]:
    return sorted(Lake(settings).read_arrow("silver/interactions").column("event_id")
                  .to_pylist())


def test_a_batch_read_again_after_a_crash_lands_once_and_offsets_follow_the_commit(
        spark, settings, topic_settings, monkeypatch):
    ensure_topic(topic_settings)
    settings = settings.model_copy(update={"events": topic_settings})
    values = [json.dumps(event(n)).encode() for n in range(40)]
    values.append(json.dumps(event(3)).encode())  # the same event sent twice
    values.append(json.dumps({**event(99), "user_id": None}).encode())
    values.append(b"{not json")
    produce(topic_settings, values)

    real = jobs.ingest.ingest_source

    def crash_after_commit(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("killed after the Delta commit, before the offset commit")

    monkeypatch.setattr(jobs.ingest, "ingest_source", crash_after_commit)
    with pytest.raises(RuntimeError, match="killed"):
        consume(spark, settings, DS, idle_s=10)
    monkeypatch.setattr(jobs.ingest, "ingest_source", real)
    expected = sorted(f"e{n}" for n in range(40))
    assert silver_ids(settings) == expected

    again = consume(spark, settings, DS, idle_s=10)  # the uncommitted batch, read again
    assert (again.batches, again.events, again.accepted) == (1, len(values), 0)
    assert again.duplicates == 41 and again.quarantined == 2
    assert silver_ids(settings) == expected
    reasons = sorted(Lake(settings).read_arrow("quarantine/events").column("reason")
                     .to_pylist())
    assert reasons == ["malformed_row", "missing_user_id"]

    produce(topic_settings, [json.dumps(event(40)).encode()])
    last = consume(spark, settings, DS, idle_s=3)  # only what came after the commit
    assert (last.batches, last.events, last.accepted) == (1, 1, 1)
    assert silver_ids(settings) == sorted([*expected, "e40"])


def test_consume_without_a_broker_setting_is_refused_with_the_setting_named(capsys):
    assert recpipe(["consume", "--until-idle", "1"]) != 0
    assert "events.kafka_bootstrap" in capsys.readouterr().err
