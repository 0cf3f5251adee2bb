"""Accepted events to Kafka, with a file spool for the times the broker cannot take them.

:meth:`EventStream.publish` produces each event to the topic (key: user id; the producer is
idempotent with ``acks=all``) and returns once the broker acknowledged every one. Events the
broker did not acknowledge within ``produce_timeout_s`` go to the fallback spool (fsynced)
instead, so the request is answered 202 only after one of the two holds the event. After a
failure, later requests go straight to the spool while a background thread probes the
broker every ``retry_s``; when it answers, the thread drains the spool's files into the
topic and deletes each file only after every line of it was acknowledged.

A timed-out message may still have reached the broker, so the drain can send an event twice;
ingest is idempotent by ``event_id``, which makes that harmless. Files are claimed for the
drain by renaming them (``.draining-<pid>``), so several workers never send one file at
once, and a claim left by a dead process is taken back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conf.errors import SpoolError
from conf.events import EventStreamSettings
from serving_export.service.spool import (
    EventSpool,
    GroupCommitSpool,
    _pid_alive,
    encode_event,
    read_spool,
)

logger = logging.getLogger(__name__)

DRAINING = ".draining-"
FALLBACK_ROTATE_BYTES = 16 * 1024 * 1024


class EventStream:
    """The service's Kafka producer and its fallback spool.

    Args:
        cfg: the event stream settings (``kafka_bootstrap`` must be set).
        on_path: called with ``"kafka"``, ``"spool"`` or ``"drained"`` and an event count
            (metrics).
    """

    def __init__(self, cfg: EventStreamSettings, on_path: Any = None):
        if not cfg.kafka_bootstrap:
            raise ValueError("events.kafka_bootstrap is not set")
        from confluent_kafka import Producer

        self.cfg = cfg
        self.on_path = on_path or (lambda path, n: None)
        self.producer = Producer({
            "bootstrap.servers": cfg.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": cfg.linger_ms,
            "compression.type": "lz4",
            "message.timeout.ms": int(cfg.produce_timeout_s * 1000),
            "reconnect.backoff.max.ms": 1000,
            "logger": logging.getLogger("recpipe.kafka"),
        })
        self.spool = EventSpool(cfg.fallback_dir, FALLBACK_ROTATE_BYTES, cfg.retry_s)
        self.fallback = GroupCommitSpool(self.spool)
        self._down_until = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name="kafka-poll", daemon=True),
                         threading.Thread(target=self._drain_loop, name="kafka-drain",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def broker_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self) -> None:
        # two probe intervals: the drain thread's next failed probe extends it in time
        self._down_until = time.monotonic() + 2 * self.cfg.retry_s

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)  # runs the delivery callbacks

    async def publish(self, records: Sequence[Mapping[str, Any]]) -> str:
        """Hold ``records`` durably: in the topic, or (for those the broker did not take) in
        the fallback spool. Returns ``"kafka"`` or ``"spool"`` (some or all spooled).

        Raises:
            SpoolError: the broker did not take them and the spool could not write them.
        """
        if self.broker_down:
            await self.fallback.append(records)
            self.on_path("spool", len(records))
            return "spool"
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        errors: list[Any] = [None] * len(records)
        left = [len(records)]
        lock = threading.Lock()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def arrived(k: int, err: Any) -> None:  # in the poll thread: only the last one
            errors[k] = err                     # wakes the event loop
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                loop.call_soon_threadsafe(finish)

        for k, record in enumerate(records):
            try:
                self.producer.produce(self.cfg.topic, encode_event(record),
                                      str(record["user_id"]).encode(),
                                      on_delivery=lambda err, _msg, k=k: arrived(k, err))
            except Exception as exc:  # BufferError (queue full) or KafkaException
                arrived(k, exc)
        try:
            await asyncio.wait_for(done, self.cfg.produce_timeout_s + 1.0)
            failed = [r for r, err in zip(records, errors, strict=True) if err is not None]
        except TimeoutError:  # no delivery report in time: spool them all
            failed = list(records)
        if not failed:
            self.on_path("kafka", len(records))
            return "kafka"
        self._mark_down()
        err = next((e for e in errors if e is not None), "no delivery report in time")
        logger.warning("kafka did not take %d of %d events (%s); spooled", len(failed),
                       len(records), err)
        await self.fallback.append(failed)
        self.on_path("kafka", len(records) - len(failed))
        self.on_path("spool", len(failed))
        return "spool"

    # ----- drain -----------------------------------------------------------------------
    def _drain_loop(self) -> None:
        while not self._stop.wait(self.cfg.retry_s):
            try:
                self.drain()
            except Exception:  # the drain must outlive any error; files stay for later
                logger.exception("draining the kafka fallback spool failed")

    def broker_reachable(self) -> bool:
        """True when the broker answers a metadata request for the topic in time."""
        try:
            meta = self.producer.list_topics(self.cfg.topic, timeout=1.0)
        except Exception:
            return False
        topic = meta.topics.get(self.cfg.topic)
        return topic is not None and topic.error is None and bool(topic.partitions)

    def _claim(self) -> list[Path]:
        folder = self.spool.directory
        for path in folder.glob(f"*{DRAINING}*"):  # claims of dead processes: take back
            name, _, pid = path.name.rpartition(DRAINING)
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                os.replace(path, path.with_name(name))
        claimed = []
        for path in sorted(folder.glob("*.jsonl")):
            target = path.with_name(f"{path.name}{DRAINING}{os.getpid()}")
            try:
                os.replace(path, target)
            except FileNotFoundError:  # another worker claimed it first
                continue
            claimed.append(target)
        return claimed

    def drain(self) -> int:
        """Send the fallback spool's closed files to the topic if the broker answers;
        return the number of events sent. A file is deleted only when all its events were
        acknowledged; otherwise it is handed back for the next try."""
        self.spool.recover()  # open files of dead workers: sealed, then drained here
        if not any(self.spool.directory.glob("*.jsonl*")):
            return 0
        if not self.broker_reachable():
            self._mark_down()
            return 0
        self._down_until = 0.0
        self.spool.close()  # seal this process's open file so it can be drained too
        sent = 0
        for path in self._claim():
            original = path.with_name(path.name.rpartition(DRAINING)[0])
            errors: list[Any] = []
            events = list(read_spool(path))
            for record in events:
                self._produce_blocking(record, errors)
            left = self.producer.flush(self.cfg.produce_timeout_s + 1.0)
            if errors or left:
                os.replace(path, original)
                self._mark_down()
                logger.warning("drain of %s stopped: %s", original.name,
                               errors[0] if errors else f"{left} unacknowledged")
                break
            path.unlink()
            sent += len(events)
            self.on_path("drained", len(events))
        return sent

    def _produce_blocking(self, record: Mapping[str, Any], errors: list[Any]) -> None:
        def callback(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)
        while True:
            try:
                self.producer.produce(self.cfg.topic, encode_event(record),
                                      str(record["user_id"]).encode(), on_delivery=callback)
                return
            except BufferError:  # the local queue is full: let deliveries catch up
                self.producer.poll(0.1)

    def close(self) -> None:
        """Stop the threads, wait for outstanding deliveries, seal the spool."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.cfg.produce_timeout_s + 2.0)
        self.producer.flush(self.cfg.produce_timeout_s)
        self.spool.close()


__all__ = ["EventStream", "SpoolError"]
