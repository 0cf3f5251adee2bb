"""The client of ``recpipe bench events``: posts event batches over keep-alive HTTP/1.1 and
keeps the books (what was sent, accepted, refused, retried).

A request refused because the service is down (connection refused or cut) or answered 5xx is
retried with the same body, so the same ``event_id`` and ``ts``: the pipeline must store it
once however often it arrived. A 4xx is not retried (a bad request stays bad) and counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES = ("view", "click", "click", "click", "add_to_cart", "purchase")


class EventSource:
    """Batches of 1 to 5 events with unique ids, over a Zipf-like population of users and
    items, all stamped ``ts`` (so a retried batch is byte-for-byte the same)."""

    def __init__(self, ts: str, users: int = 200_000, items: int = 20_000, seed: int = 5):
        self.ts, self.users, self.items = ts, users, items
        self.rng = random.Random(seed)
        self.count = 0

    def batch(self) -> list[dict[str, Any]]:
        out = []
        for _ in range(self.rng.randint(1, 5)):
            self.count += 1
            user = int(self.users ** self.rng.random()) - 1  # log-uniform: heavy head
            item = int(self.items ** self.rng.random()) - 1
            out.append({"event_id": f"ev{self.count:09d}", "user_id": f"u{user:06d}",
                        "item_id": f"i{item:05d}", "event_type": self.rng.choice(EVENT_TYPES),
                        "ts": self.ts})
        return out


@dataclass
class Books:
    """What the client did, summed over every phase."""

    sent: int = 0
    """Events in requests the client made (each event once, however often retried)."""
    accepted: set[str] = field(default_factory=set)
    """Ids of events answered 202."""
    non_2xx: int = 0
    """Answers other than 2xx (5xx retried, 4xx not)."""
    refused: int = 0
    """Attempts that found no service (connection refused or cut), all retried."""
    rejected: int = 0
    """Events answered 4xx (never accepted)."""


class Poster:
    """Posts batches to ``url`` (``http://host:port``) with the API key, one connection per
    concurrent worker."""

    def __init__(self, url: str, api_key: str, books: Books):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.key = api_key
        self.books = books

    def _wire(self, events: list[dict[str, Any]]) -> bytes:
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        return (f"POST /events/interactions HTTP/1.1\r\nHost: {self.host}\r\n"
                f"X-API-Key: {self.key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def _exchange(self, conn: list[Any], wire: bytes) -> int:
        if not conn:
            conn[:] = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
        reader, writer = conn
        writer.write(wire)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        await reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    async def post(self, conn: list[Any], events: list[dict[str, Any]]) -> float:
        """Post until accepted (or refused with 4xx); the seconds it took in all."""
        wire, start = self._wire(events), time.perf_counter()
        self.books.sent += len(events)
        while True:
            try:
                status = await self._exchange(conn, wire)
            except (OSError, asyncio.IncompleteReadError, TimeoutError,
                    asyncio.LimitOverrunError):
                self.books.refused += 1
                if conn:
                    conn[1].close()
                conn.clear()
                await asyncio.sleep(0.05)
                continue
            if 200 <= status < 300:
                self.books.accepted.update(e["event_id"] for e in events)
                return time.perf_counter() - start
            self.books.non_2xx += 1
            if status < 500:
                self.books.rejected += len(events)
                return time.perf_counter() - start
            await asyncio.sleep(0.05)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1e3 if values else float("nan")


async def closed_loop(poster: Poster, source: EventSource, connections: int,
                      until: Callable[[], bool]) -> dict[str, float]:
    """``connections`` workers post back to back until ``until()``; events/s and latency."""
    accepted0, errors0 = len(poster.books.accepted), poster.books.non_2xx
    latencies: list[float] = []

    async def worker() -> None:
        conn: list[Any] = []
        while not until():
            latencies.append(await poster.post(conn, source.batch()))
        if conn:
            conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {"connections": connections, "seconds": round(elapsed, 2),
            "events_per_s": round((len(poster.books.accepted) - accepted0) / elapsed, 1),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "errors": poster.books.non_2xx - errors0,
            "p50_ms": round(_pct(latencies, 0.5), 2), "p99_ms": round(_pct(latencies, 0.99), 2)}


async def fixed_rate(poster: Poster, source: EventSource, rate: float, seconds: float,
                     connections: int = 64) -> dict[str, float]:
    """Requests at ``rate`` per second for ``seconds`` (open loop): latency counts from the
    scheduled send time, so queueing in the service shows (no coordinated omission)."""
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors0 = poster.books.non_2xx

    async def worker() -> None:
        conn: list[Any] = []
        while (scheduled := await queue.get()) is not None:
            await poster.post(conn, source.batch())
            latencies.append(time.perf_counter() - scheduled)
        if conn:
            conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.1
    total = int(rate * seconds)
    for k in range(total):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(start + k / rate)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {"target_rps": rate, "achieved_rps": round(total / elapsed, 1), "requests": total,
            "errors": poster.books.non_2xx - errors0,
            "p50_ms": round(_pct(latencies, 0.5), 2), "p99_ms": round(_pct(latencies, 0.99), 2)}
