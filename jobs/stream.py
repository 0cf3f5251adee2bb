"""``recpipe consume [--ds D] [--until-idle S]``: the event topic into the lake, batch by batch.

Reads ``events.topic`` as the consumer group ``events.group`` from its committed offsets. A
batch closes at ``events.batch_max_events`` events, ``events.batch_max_s`` seconds after its
first event, or when the topic has been quiet for a second. Each batch is written as one
JSON-lines file (named after its offsets) and ingested exactly as ``recpipe ingest --source
FILE`` does it (bronze append, validation with quarantine, de-duplication on ``event_id``
against silver); only after those Delta commits are the batch's offsets committed.

So a crash anywhere loses nothing (uncommitted offsets are read again) and duplicates nothing:
bronze skips a batch it already holds, and silver keeps one row per ``event_id``. The
topic's ``retention.ms`` (``events.retention_hours``) bounds how long the consumer may be
down: an event older than that which was never ingested is deleted by the broker.

The ingest date of a batch is ``--ds`` when given (a replay into a chosen partition), else the
UTC date at which the batch is ingested.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conf import Settings
from conf.errors import UsageError
from conf.events import EventStreamSettings
from jobs.cli_common import add_common_args, parse_ds, settings_from_args

log = logging.getLogger(__name__)

QUIET_S = 1.0
"""A batch with events closes when no new event arrived for this long."""


def ensure_topic(cfg: EventStreamSettings, timeout_s: float = 30.0) -> bool:
    """Create the topic (``cfg.partitions``, ``retention.ms``) if it is missing; True if
    created.

    Raises:
        UsageError: ``kafka_bootstrap`` is unset, or the broker refused or did not answer.
    """
    bootstrap = _bootstrap(cfg)
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap,
                         "logger": logging.getLogger("recpipe.kafka")})
    try:
        if cfg.topic in admin.list_topics(timeout=timeout_s).topics:
            return False
        retention = str(cfg.retention_hours * 3600 * 1000)
        topic = NewTopic(cfg.topic, cfg.partitions, cfg.replication,
                         config={"retention.ms": retention})
        admin.create_topics([topic], request_timeout=timeout_s)[cfg.topic].result(timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return False
        raise UsageError(f"kafka at {bootstrap}: cannot create topic {cfg.topic!r}: "
                         f"{exc}") from exc
    return True


def _bootstrap(cfg: EventStreamSettings) -> str:
    if not cfg.kafka_bootstrap:
        raise UsageError("events.kafka_bootstrap is not set (RECPIPE_EVENTS__KAFKA_BOOTSTRAP "
                         "or --kafka-bootstrap): there is no topic to consume")
    return cfg.kafka_bootstrap


@dataclass
class Batch:
    """One consumed batch: its message values and the offsets to commit after it."""

    values: list[bytes]
    next_offsets: dict[int, int]
    first_offsets: dict[int, int]

    def name(self, topic: str) -> str:
        """A file name from the offset ranges: the same batch read again gets the same name
        (and so the same bronze batch id)."""
        ranges = ",".join(f"{p}:{self.first_offsets[p]}-{self.next_offsets[p]}"
                          for p in sorted(self.next_offsets))
        digest = hashlib.sha256(f"{topic}/{ranges}".encode()).hexdigest()[:20]
        return f"events-{digest}.jsonl"


def next_batch(consumer: Any, cfg: EventStreamSettings, idle_s: float | None,
               assigned: list[float] | None = None) -> Batch | None:
    """Poll until a batch closes; None when nothing arrived within ``idle_s`` seconds of
    holding partitions (``assigned[0]``: when the group last gave this consumer its
    partitions; the wait for a rebalance does not count as idle)."""
    values: list[bytes] = []
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    started: float | None = None
    waiting_since = last_event = time.monotonic()
    while len(values) < cfg.batch_max_events:
        msgs = consumer.consume(min(10_000, cfg.batch_max_events - len(values)), 0.2)
        now = time.monotonic()
        for msg in msgs:
            if msg.error():
                log.warning("kafka: %s", msg.error())
                continue
            value = msg.value() or b""
            values.append(value.replace(b"\n", b" ").replace(b"\r", b" "))
            first.setdefault(msg.partition(), msg.offset())
            last[msg.partition()] = msg.offset() + 1
            last_event = now
            started = now if started is None else started
        if started is None:
            since = max(waiting_since, assigned[0]) if assigned else waiting_since
            if idle_s is not None and now - since >= idle_s:
                return None
        elif now - last_event >= QUIET_S or now - started >= cfg.batch_max_s:
            break
    return Batch(values, last, first)


def staging_dir(settings: Settings) -> Path:
    """This process's folder for the batch being ingested (``<work_dir>/consume/<pid>``).
    Folders of consumers that are gone are removed: their batches were never committed, so
    the topic gives those events again."""
    root = Path(settings.resolve(settings.work_dir)) / "consume"
    for folder in root.glob("*"):
        if folder.name.isdigit() and int(folder.name) != os.getpid() and not _alive(
                int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / str(os.getpid())
    mine.mkdir(parents=True, exist_ok=True)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ConsumeReport:
    batches: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0


def consume(spark: Any, settings: Settings, ds: str | None, idle_s: float | None,
            max_batches: int | None = None, instance: str | None = None) -> ConsumeReport:
    """Ingest batches from the topic until it is idle for ``idle_s`` (None: forever) or
    ``max_batches`` were ingested; see the module docstring.

    ``instance`` makes the consumer a static member of the group (``group.instance.id``): a
    consumer restarted under the same name takes its partitions back at once instead of
    waiting for the dead one's session to expire (and a second live one of that name is
    fenced).
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from jobs.ingest import ingest_source

    cfg = settings.events
    ensure_topic(cfg)
    consumer = Consumer({
        "bootstrap.servers": _bootstrap(cfg),
        "group.id": cfg.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": 3_600_000,  # one batch's ingest may take minutes
        "session.timeout.ms": 10_000,  # a dead consumer's partitions move on after 10 s
        "heartbeat.interval.ms": 3_000,
        "logger": logging.getLogger("recpipe.kafka"),
        **({"group.instance.id": instance} if instance else {}),
    })
    assigned = [float("inf")]  # not yet: the first rebalance does not count as idle

    def on_assign(_consumer: Any, _partitions: Any) -> None:
        assigned[0] = time.monotonic()

    consumer.subscribe([cfg.topic], on_assign=on_assign)
    staging = staging_dir(settings)
    report = ConsumeReport()
    try:
        while max_batches is None or report.batches < max_batches:
            batch = next_batch(consumer, cfg, idle_s, assigned)
            if batch is None:
                break
            path = staging / batch.name(cfg.topic)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(b"".join(v + b"\n" for v in batch.values))
            tmp.replace(path)
            day = ds or datetime.now(UTC).strftime("%Y-%m-%d")
            summary = ingest_source(spark, settings, day, path)
            offsets = [TopicPartition(cfg.topic, p, o) for p, o in batch.next_offsets.items()]
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: the batch is read again later
                log.warning("offset commit failed (%s); the batch will be re-read and "
                            "de-duplicated", exc)
            path.unlink()
            report.batches += 1
            report.events += len(batch.values)
            report.accepted += summary.accepted
            report.duplicates += summary.duplicates
            report.quarantined += summary.quarantined
            log.info("batch %d: %d events -> %d accepted, %d duplicates, %d quarantined",
                     report.batches, len(batch.values), summary.accepted, summary.duplicates,
                     summary.quarantined)
    finally:
        consumer.close()
        shutil.rmtree(staging, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe consume", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", type=parse_ds, help="ingest date of every batch (default: the "
                                                    "UTC date when each batch is ingested)")
    parser.add_argument("--until-idle", type=float, metavar="S",
                        help="stop once no event arrived for S seconds (default: run forever)")
    parser.add_argument("--max-batches", type=int, help="stop after this many batches")
    parser.add_argument("--kafka-bootstrap", help="brokers (default: events.kafka_bootstrap)")
    parser.add_argument("--instance", help="static member name in the consumer group: a "
                        "restart under the same name resumes at once (one live consumer per "
                        "name)")
    parser.add_argument("--create-topic", action="store_true",
                        help="only create the topic if it is missing, then exit")
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.until_idle is not None and args.until_idle <= 0:
        parser.error("--until-idle must be positive")
    if args.max_batches is not None and args.max_batches < 1:
        parser.error("--max-batches must be at least 1")
    settings = settings_from_args(args)
    if args.kafka_bootstrap:
        settings = settings.model_copy(update={"events": settings.events.model_copy(
            update={"kafka_bootstrap": args.kafka_bootstrap})})
    created = ensure_topic(settings.events)  # a missing setting or broker: before Spark
    if args.create_topic:
        print(f"topic {settings.events.topic}: {'created' if created else 'exists'}")
        return 0
    from jobs.spark import get_spark

    report = consume(get_spark(settings), settings, args.ds, args.until_idle, args.max_batches,
                     args.instance)
    print("consume " + " ".join(f"{k}={v}" for k, v in asdict(report).items()))
    return 0
