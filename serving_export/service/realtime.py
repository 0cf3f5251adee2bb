"""The real-time store: what each user interacted with in the last minutes.

Two implementations of one small async interface:

- :class:`RedisStore` (when ``redis_url`` is set): per user a sorted set of item ids scored by
  event time, capped at ``recent_items`` and expiring ``recent_ttl_s`` after the last event,
  plus a second set of "seed" items (every event type but ``skip``) for the similar-items
  blend. Short timeouts and a breaker: after a failure, calls fail fast for
  ``redis_retry_s`` and answers are served degraded.
- :class:`InProcessStore`: the same behaviour in a bounded LRU of users, for one process.

Both raise :class:`StoreUnavailable` when they cannot answer; callers then serve without
real-time data and flag the answer ``degraded``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conf.errors import StoreUnavailable
from conf.pipeline import NEGATIVE_FEEDBACK
from serving_export.service.resp import RespClient, RespError

if TYPE_CHECKING:
    from conf.serving import ServingSettings

logger = logging.getLogger(__name__)

NEGATIVE_EVENTS = frozenset({"skip", *NEGATIVE_FEEDBACK})
"""Event types that hide an item but do not seed the similar-items blend."""




@dataclass(frozen=True)
class Recent:
    """A user's real-time state.

    Attributes:
        items: item ids interacted with, most recent first (at most ``recent_items``).
        seeds: item ids of positive interactions, most recent first.
        refused: item ids the user hid, marked not interested or disliked, most recent
            first: never shown, whatever the request's filters.
    """

    items: tuple[str, ...] = ()
    seeds: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


EMPTY = Recent()


@dataclass(frozen=True)
class Interaction:
    """One event as the store needs it: who, what, when (epoch seconds), and whether it
    seeds the blend."""

    user_id: str
    item_id: str
    ts: float
    positive: bool
    refused: bool = False


class RealtimeStore(Protocol):
    """What the service needs from a real-time store."""

    kind: str

    async def recent(self, user_id: str) -> Recent:
        """The user's recent items (``EMPTY`` if none). Raises ``StoreUnavailable``."""
        ...

    async def recent_many(self, user_ids: Sequence[str]) -> list[Recent]:
        """``recent`` for many users in one round trip. Raises ``StoreUnavailable``."""
        ...

    async def record(self, events: Sequence[Interaction]) -> None:
        """Add events. Raises ``StoreUnavailable``."""
        ...

    async def ping(self) -> bool:
        """True when the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class InProcessStore:
    """Real-time store inside the process: an LRU of users, each capped and expiring.

    Args:
        cap: items kept per user.
        ttl_s: a user's state expires this long after their last event (seconds).
        max_users: least recently active users are forgotten past this count.
        clock: source of "now" in epoch seconds (tests pass a fake).
    """

    kind = "inprocess"

    def __init__(self, cap: int, ttl_s: float, max_users: int,
                 clock: Callable[[], float] = time.time):
        if cap < 1 or max_users < 1 or ttl_s <= 0:
            raise ValueError(f"cap ({cap}), max_users ({max_users}) and ttl_s ({ttl_s}) "
                             f"must be positive")
        self.cap, self.ttl_s, self.max_users, self.clock = cap, ttl_s, max_users, clock
        # user -> (last event time, recent, seeds, refused) as {item: ts} in time order.
        self._users: OrderedDict[str, tuple[float, dict[str, float], dict[str, float],
                                            dict[str, float]]] = OrderedDict()

    def _get(self, user_id: str) -> Recent:
        entry = self._users.get(user_id)
        if entry is None:
            return EMPTY
        if self.clock() - entry[0] > self.ttl_s:
            del self._users[user_id]
            return EMPTY
        return Recent(tuple(reversed(entry[1])), tuple(reversed(entry[2])),
                      tuple(reversed(entry[3])))

    async def recent(self, user_id: str) -> Recent:
        return self._get(user_id)

    async def recent_many(self, user_ids: Sequence[str]) -> list[Recent]:
        return [self._get(u) for u in user_ids]

    @staticmethod
    def _add(bucket: dict[str, float], item: str, ts: float, cap: int) -> None:
        if item in bucket and bucket[item] > ts:
            return
        bucket.pop(item, None)
        bucket[item] = ts
        if len(bucket) > 1 and ts < max(bucket.values()):
            ordered = sorted(bucket.items(), key=lambda kv: kv[1])
            bucket.clear()
            bucket.update(ordered)
        while len(bucket) > cap:
            del bucket[next(iter(bucket))]

    async def record(self, events: Sequence[Interaction]) -> None:
        now = self.clock()
        for ev in events:
            entry = self._users.pop(ev.user_id, None)
            if entry is None or now - entry[0] > self.ttl_s:
                entry = (now, {}, {}, {})
            self._add(entry[1], ev.item_id, ev.ts, self.cap)
            if ev.positive:
                self._add(entry[2], ev.item_id, ev.ts, self.cap)
            if ev.refused:
                self._add(entry[3], ev.item_id, ev.ts, self.cap)
            self._users[ev.user_id] = (now, entry[1], entry[2], entry[3])
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._users.clear()


class RedisStore:
    """Real-time store in Redis (sorted sets ``<prefix>:r:<user>``, ``<prefix>:s:<user>`` and
    ``<prefix>:n:<user>``: recent items, blend seeds, refused items).

    Args:
        url: ``redis://host:port/db``.
        cap, ttl_s: items kept per user; expiry after the last event (seconds).
        timeout_s: socket and connect timeout of one call.
        retry_s: after a failure, fail fast for this long before trying Redis again.
        prefix: key prefix.
        clock: monotonic clock for the breaker (tests pass a fake).
    """

    kind = "redis"

    def __init__(self, url: str, cap: int, ttl_s: int, timeout_s: float = 0.05,
                 retry_s: float = 1.0, prefix: str = "recpipe",
                 clock: Callable[[], float] = time.monotonic):
        self.cap, self.ttl_s, self.retry_s, self.prefix, self.clock = (
            cap, int(ttl_s), retry_s, prefix, clock)
        self._client = RespClient(url, timeout_s)
        self._down_until = 0.0

    def _keys(self, user_id: str) -> tuple[str, str, str]:
        """Sorted sets of the user's recent items, blend seeds and refused items."""
        return (f"{self.prefix}:r:{user_id}", f"{self.prefix}:s:{user_id}",
                f"{self.prefix}:n:{user_id}")

    def _check(self) -> None:
        if self._down_until and self.clock() < self._down_until:
            raise StoreUnavailable("redis marked down after a recent failure")

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        if not self._down_until or self.clock() >= self._down_until:
            logger.warning("redis unavailable (%s: %s); serving degraded for %.1fs",
                           type(exc).__name__, exc, self.retry_s)
        self._down_until = self.clock() + self.retry_s
        return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")

    async def _run(self, commands: list[list[str | int | float]]) -> list:
        """Replies of ``commands`` (one write, one round trip); any failure or error reply
        marks Redis down and raises :class:`StoreUnavailable`."""
        self._check()
        try:
            replies = await self._client.execute(commands)
        except RespError as exc:
            raise self._failed(exc) from exc
        for reply in replies:
            if isinstance(reply, RespError):
                raise self._failed(reply)
        self._down_until = 0.0
        return replies

    async def recent_many(self, user_ids: Sequence[str]) -> list[Recent]:
        last = self.cap - 1
        commands: list[list[str | int | float]] = []
        for user in user_ids:
            commands += [["ZREVRANGE", key, 0, last] for key in self._keys(user)]
        out = await self._run(commands)
        return [Recent(tuple(out[i]), tuple(out[i + 1]), tuple(out[i + 2]))
                for i in range(0, len(out), 3)]

    async def recent(self, user_id: str) -> Recent:
        return (await self.recent_many([user_id]))[0]

    async def record(self, events: Sequence[Interaction]) -> None:
        commands: list[list[str | int | float]] = []
        touched: dict[str, None] = {}
        for ev in events:
            rkey, skey, nkey = self._keys(ev.user_id)
            commands.append(["ZADD", rkey, "GT", repr(float(ev.ts)), ev.item_id])
            if ev.positive:
                commands.append(["ZADD", skey, "GT", repr(float(ev.ts)), ev.item_id])
            if ev.refused:
                commands.append(["ZADD", nkey, "GT", repr(float(ev.ts)), ev.item_id])
            touched[ev.user_id] = None
        for user in touched:
            for key in self._keys(user):
                commands += [["ZREMRANGEBYRANK", key, 0, -(self.cap + 1)],
                             ["EXPIRE", key, self.ttl_s]]
        await self._run(commands)

    async def ping(self) -> bool:
        try:
            return (await self._run([["PING"]]))[0] == "PONG"
        except StoreUnavailable:
            return False

    async def close(self) -> None:
        self._client.close()


def make_store(settings: ServingSettings) -> RealtimeStore:
    """The store the serving settings ask for (Redis when ``redis_url`` is set)."""
    s = settings
    if getattr(s, "redis_url", None):
        return RedisStore(s.redis_url, s.recent_items, s.recent_ttl_s, s.redis_timeout_s,
                          s.redis_retry_s)
    return InProcessStore(s.recent_items, s.recent_ttl_s, s.inprocess_max_users)
