"""Real-time stores: in-process and a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from bench.redis_server import RedisServer, redis_binary
from conf.errors import StoreUnavailable
from serving_export.service.realtime import InProcessStore, Interaction, RedisStore
from tests.conftest import require


@pytest.fixture
def needs_redis():
    require(redis_binary() is not None, "redis-server binary not installed")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(coro):
    return asyncio.run(coro)


def _clicks(user, items, start=0.0, event_type_positive=True):
    return [Interaction(user, item, start + k, event_type_positive) for k, item in
            enumerate(items)]


def test_inprocess_keeps_most_recent_items_capped():
    store = InProcessStore(cap=3, ttl_s=100, max_users=10)
    _run(store.record(_clicks("u", ["a", "b", "c", "d"])))
    _run(store.record([Interaction("u", "e", 1.5, False)]))  # older skip: not a seed
    recent = _run(store.recent("u"))
    assert recent.items == ("d", "c", "e")  # by event time; the oldest (a, then b) fall off
    assert recent.seeds == ("d", "c", "b")  # a skip hides an item but seeds nothing
    _run(store.record([Interaction("u", "x", 10.0, False)]))
    recent = _run(store.recent("u"))
    assert recent.items == ("x", "d", "c") and "x" not in recent.seeds


def test_inprocess_expires_and_forgets_least_recent_users():
    clock = Clock()
    store = InProcessStore(cap=5, ttl_s=60, max_users=2, clock=clock)
    _run(store.record(_clicks("u1", ["a"])))
    clock.now += 61
    assert _run(store.recent("u1")).items == ()
    _run(store.record(_clicks("u1", ["a"])))
    _run(store.record(_clicks("u2", ["b"])))
    _run(store.record(_clicks("u3", ["c"])))
    assert [r.items for r in _run(store.recent_many(["u1", "u2", "u3"]))] == [(), ("b",), ("c",)]


@pytest.mark.redis
@pytest.mark.usefixtures("needs_redis")
def test_redis_store_caps_orders_and_sets_ttl(tmp_path):
    with RedisServer(tmp_path) as server:
        async def scenario():
            store = RedisStore(server.url, cap=3, ttl_s=120, timeout_s=0.5)
            await store.record(_clicks("u", ["a", "b", "c", "d"]))
            await store.record([Interaction("u", "s", 50.0, False)])
            recent = await store.recent("u")
            many = await store.recent_many(["u", "nobody"])
            import redis.asyncio as aioredis
            client = aioredis.Redis.from_url(server.url)
            ttl = await client.ttl("recpipe:r:u")
            await client.aclose()
            await store.close()
            return recent, many, ttl

        recent, many, ttl = _run(scenario())
    assert recent.items == ("s", "d", "c")
    assert recent.seeds == ("d", "c", "b")
    assert many[1].items == ()
    assert 0 < ttl <= 120


@pytest.mark.redis
@pytest.mark.usefixtures("needs_redis")
def test_redis_down_raises_unavailable_then_fails_fast(tmp_path):
    clock = Clock()
    server = RedisServer(tmp_path)
    store = RedisStore(server.url, cap=3, ttl_s=60, timeout_s=0.2, retry_s=5, clock=clock)
    server.stop()

    async def scenario():
        with pytest.raises(StoreUnavailable):
            await store.recent("u")
        with pytest.raises(StoreUnavailable, match="marked down"):
            await store.record(_clicks("u", ["a"]))
        assert not await store.ping()
        await store.close()

    _run(scenario())


def _refusals(store) -> tuple:
    async def scenario():
        await store.record(_clicks("u", ["a", "b"]))
        await store.record([Interaction("u", "b", 5.0, False, True),   # hid b after clicking
                            Interaction("u", "z", 6.0, False, True),
                            Interaction("u", "k", 7.0, False)])        # a skip: not refused
        recent = await store.recent("u")
        await store.close()
        return recent
    return _run(scenario())


def test_refused_items_are_kept_apart_from_recent_items_and_seeds():
    recent = _refusals(InProcessStore(cap=5, ttl_s=100, max_users=10))
    assert recent.refused == ("z", "b")
    assert recent.items == ("k", "z", "b", "a") and recent.seeds == ("b", "a")


@pytest.mark.redis
@pytest.mark.usefixtures("needs_redis")
def test_redis_store_keeps_refused_items(tmp_path):
    with RedisServer(tmp_path) as server:
        recent = _refusals(RedisStore(server.url, cap=5, ttl_s=120, timeout_s=0.5))
    assert recent.refused == ("z", "b")
    assert recent.items == ("k", "z", "b", "a") and recent.seeds == ("b", "a")
