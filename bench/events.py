"""``recpipe bench events [--events N] [--json OUT]``: the event path, measured while it fails.

A real single-node Kafka broker, ``recpipe serve`` producing to it and ``recpipe consume``
ingesting the topic into a fresh lake, all on this machine. Phases:

1. **throughput**: closed-loop posting (requests of 1 to 5 events) at 8, 32 and 128
   connections; ``events_per_s`` is the best rate with no error. The baseline, measured in
   the same run: the same load on a service without Kafka (the fsynced file spool).
2. **latency**: 1,000 requests/s for 15 s, open loop (``p99_ms`` from the scheduled time),
   also against the file-spool baseline.
3. **failures**: posting goes on at 300 requests/s while the consumer is killed (``kill -9``)
   in the middle of a batch and restarted, the broker is killed and restarted, the service
   is killed and restarted (the client retries what found no service, with the same
   ``event_id``), and the consumer is killed mid-batch once more; at least ``--events`` are
   sent in this phase.

Then the consumer runs until the topic is idle and the books are closed against
``silver/interactions``: ``in_silver`` (accepted ids found there), ``lost`` (accepted, not
there) and ``duplicates`` (rows beyond one per id).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.events_client import Books, EventSource, Poster, closed_loop, fixed_rate
from bench.kafka_broker import KafkaBroker
from bench.load import wait_ready
from bench.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-events-key"
CONNECTIONS = (8, 32, 128)


class Stack:
    """The broker, the service and the consumer of one run, each restartable."""

    def __init__(self, workdir: Path, broker: KafkaBroker, ds: str):
        self.workdir, self.broker, self.ds = workdir, broker, ds
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO),
                    "RECPIPE_LAKE_ROOT": str(workdir / "lake"),
                    "RECPIPE_WORK_DIR": str(workdir / "work"),
                    "RECPIPE_RUNS_DIR": str(workdir / "runs"),
                    "RECPIPE_EVENTS__KAFKA_BOOTSTRAP": broker.bootstrap,
                    "RECPIPE_EVENTS__FALLBACK_DIR": str(workdir / "fallback"),
                    "RECPIPE_EVENTS__BATCH_MAX_S": "10",
                    "RECPIPE_SERVING__API_KEY": KEY,
                    "RECPIPE_SERVING__RELOAD_POLL_S": "1"}
        for key in ("RECPIPE_SERVING__REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(key, None)
        self.service: subprocess.Popen | None = None
        self.consumer: subprocess.Popen | None = None
        self.consumer_log = open(workdir / "consumer.log", "a")  # noqa: SIM115 (whole run)
        self.log: list[dict[str, Any]] = []
        self.start = time.monotonic()

    def note(self, what: str) -> None:
        self.log.append({"t_s": round(time.monotonic() - self.start, 1), "event": what})
        print(f"  [{self.log[-1]['t_s']:7.1f}s] {what}", flush=True)

    def start_service(self, kafka: bool = True, port: int | None = None) -> subprocess.Popen:
        args = [sys.executable, "-m", "recpipe", "serve", "--host", "127.0.0.1", "--port",
                str(port or self.port), "--releases-root", str(self.workdir / "releases"),
                "--spool-dir", str(self.workdir / ("spool" if kafka else "spool-baseline"))]
        env = dict(self.env)
        if not kafka:
            env.pop("RECPIPE_EVENTS__KAFKA_BOOTSTRAP")
        proc = subprocess.Popen(args, env=env, cwd=str(self.workdir),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{port or self.port}", proc)
        if kafka:
            self.service = proc
        return proc

    def start_consumer(self, idle_s: float = 30.0) -> None:
        self.consumer = subprocess.Popen(
            [sys.executable, "-m", "recpipe", "consume", "--ds", self.ds, "--until-idle",
             str(idle_s), "--instance", "bench-consumer"], env=self.env, cwd=str(self.workdir),
            stdout=self.consumer_log, stderr=subprocess.STDOUT)

    def mid_batch(self) -> bool:
        """True while the consumer holds a batch it has not committed (its staging file)."""
        if self.consumer is None or self.consumer.poll() is not None:
            return False
        return any((self.workdir / "work" / "consume" / str(self.consumer.pid)).glob("*.jsonl"))

    def kill(self, proc: subprocess.Popen | None) -> None:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


async def chaos(stack: Stack) -> None:
    """Consumer killed mid-batch, broker killed, service killed, consumer killed again."""
    async def kill_consumer_mid_batch(n: int) -> None:
        while not stack.mid_batch():
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # into the batch's ingest
        stack.kill(stack.consumer)
        stack.note(f"consumer killed (kill -9) mid-batch ({n})")
        stack.start_consumer()
        stack.note("consumer restarted")

    await kill_consumer_mid_batch(1)
    await asyncio.sleep(5)
    stack.broker.kill()
    stack.note("broker killed (kill -9)")
    await asyncio.sleep(5)
    await asyncio.to_thread(stack.broker.start)
    stack.note("broker restarted")
    await asyncio.sleep(5)
    stack.kill(stack.service)
    stack.note("service killed (kill -9)")
    await asyncio.sleep(2)
    await asyncio.to_thread(stack.start_service)
    stack.note("service restarted")
    await kill_consumer_mid_batch(2)


async def drive(stack: Stack, books: Books, target: int) -> dict[str, Any]:
    source = EventSource(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    poster = Poster(stack.url, KEY, books)
    out: dict[str, Any] = {"throughput": [], "baseline_spool": []}
    for connections in CONNECTIONS:
        end = time.monotonic() + 8
        out["throughput"].append(await closed_loop(poster, source, connections,
                                                   lambda end=end: time.monotonic() > end))
    stack.note("throughput phase done")
    out["latency"] = await fixed_rate(poster, source, 1000, 15)
    stack.note("latency phase done")

    base_port = free_port()
    base = await asyncio.to_thread(stack.start_service, False, base_port)
    try:
        base_poster = Poster(f"http://127.0.0.1:{base_port}", KEY, Books())
        base_source = EventSource(source.ts, seed=9)
        for connections in CONNECTIONS:
            end = time.monotonic() + 8
            out["baseline_spool"].append(await closed_loop(
                base_poster, base_source, connections, lambda end=end: time.monotonic() > end))
        out["baseline_latency"] = await fixed_rate(base_poster, base_source, 1000, 15)
    finally:
        base.terminate()
        base.wait()
    stack.note("baseline (file spool, no Kafka) done")

    stack.start_consumer()
    stack.note("consumer started")
    trouble = asyncio.create_task(chaos(stack))
    first = source.count
    while not trouble.done() or source.count - first < target:
        await fixed_rate(poster, source, 300, 5)
    await trouble
    out["failure_phase_events"] = source.count - first
    stack.note(f"sending done: {source.count:,} events, {source.count - first:,} of them "
               f"while failing")
    return out


def count_silver(stack: Stack) -> tuple[list[str], int]:
    from conf import load_settings
    from jobs.lake import Lake

    settings = load_settings(overrides={"lake_root": str(stack.workdir / "lake")})
    lake = Lake(settings)
    ids = lake.read_arrow("silver/interactions", columns=["event_id"]).column(
        "event_id").to_pylist()
    quarantined = lake.read_arrow("quarantine/events", columns=["event_id"]).num_rows
    return ids, quarantined


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.release_synth import tiny_release_data
    from conf import load_settings
    from jobs.stream import ensure_topic
    from serving_export.release.publish import publish
    from serving_export.release.writer import write_release

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recpipe-bench-events-"))
    ds = datetime.now(UTC).strftime("%Y-%m-%d")
    write_release(workdir / "releases", "r1", tiny_release_data())
    publish(workdir / "releases", "r1")
    books = Books()
    started = time.monotonic()
    with KafkaBroker(workdir / "kafka") as broker:
        stack = Stack(workdir, broker, ds)
        stack.note(f"broker up at {broker.bootstrap}")
        ensure_topic(load_settings(overrides={"lake_root": str(workdir / "lake"), "events": {
            "kafka_bootstrap": broker.bootstrap}}).events)
        stack.start_service()
        stack.note("service ready")
        try:
            phases = asyncio.run(drive(stack, books, args.events))
            deadline = time.monotonic() + 120
            while any((workdir / "fallback").glob("*.jsonl*")) and time.monotonic() < deadline:
                time.sleep(0.5)
            stack.note("fallback spool drained" if not any((workdir / "fallback").glob(
                "*.jsonl*")) else "fallback spool NOT drained in 120 s")
            assert stack.consumer is not None
            stack.consumer.wait(timeout=args.consumer_timeout)
            stack.note(f"consumer idle, exited {stack.consumer.returncode}")
        finally:
            stack.kill(stack.consumer)
            if stack.service is not None:
                stack.service.terminate()
                stack.service.wait()
    ids, quarantined = count_silver(stack)
    stored = set(ids)
    best = [p for p in phases["throughput"] if p["errors"] == 0]
    base = [p for p in phases["baseline_spool"] if p["errors"] == 0]
    return {
        "sent": books.sent, "accepted": len(books.accepted), "non_2xx": books.non_2xx,
        "refused_attempts": books.refused, "rejected": books.rejected,
        "in_silver": len(books.accepted & stored), "lost": len(books.accepted - stored),
        "duplicates": len(ids) - len(stored), "unexpected_in_silver": len(stored - books.accepted),
        "quarantined": quarantined,
        "events_per_s": max((p["events_per_s"] for p in best), default=0.0),
        "baseline_spool_events_per_s": max((p["events_per_s"] for p in base), default=0.0),
        "p99_ms": phases["latency"]["p99_ms"], "p50_ms": phases["latency"]["p50_ms"],
        "baseline_spool_p99_ms": phases["baseline_latency"]["p99_ms"],
        "baseline_latency_phase": phases["baseline_latency"],
        "latency_phase": phases["latency"], "throughput_phases": phases["throughput"],
        "baseline_spool_phases": phases["baseline_spool"], "timeline": stack.log,
        "failure_phase_events": phases["failure_phase_events"],
        "elapsed_s": round(time.monotonic() - started, 1), "cpu_count": os.cpu_count(),
    }


def report(r: dict[str, Any]) -> None:
    print(f"\nsent {r['sent']:,}  accepted {r['accepted']:,}  non-2xx {r['non_2xx']:,}  "
          f"refused attempts {r['refused_attempts']:,}")
    print(f"in silver {r['in_silver']:,}  lost {r['lost']:,}  duplicates {r['duplicates']:,}  "
          f"quarantined {r['quarantined']:,}")
    print(f"events/s (no errors): Kafka {r['events_per_s']:,.0f}  |  file spool baseline "
          f"{r['baseline_spool_events_per_s']:,.0f}")
    for name, lat in (("Kafka", r["latency_phase"]), ("file spool", r["baseline_latency_phase"])):
        print(f"{name} at {lat['target_rps']:.0f} requests/s (achieved "
              f"{lat['achieved_rps']:.0f}): p50 {lat['p50_ms']:.1f} ms  p99 {lat['p99_ms']:.1f} ms")
    for p in r["throughput_phases"]:
        print(f"  kafka  {p['connections']:>4} conn: {p['events_per_s']:>8,.0f} events/s  "
              f"p99 {p['p99_ms']:.1f} ms  errors {p['errors']}")
    for p in r["baseline_spool_phases"]:
        print(f"  spool  {p['connections']:>4} conn: {p['events_per_s']:>8,.0f} events/s  "
              f"p99 {p['p99_ms']:.1f} ms  errors {p['errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe bench events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000,
                        help="send at least this many events while things are killed "
                             "(default 100,000)")
    parser.add_argument("--workdir", help="folder for the broker, lake and logs (default: a "
                                          "new temporary folder)")
    parser.add_argument("--consumer-timeout", type=float, default=1800,
                        help="seconds to wait for the consumer to catch up at the end")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be positive")
    result = run(args)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0
