"""The service's pipelined Redis client: the RESP parser, and a real redis-server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bench.redis_server import RedisServer, redis_binary
from serving_export.service.resp import RespClient, RespError, _Incomplete, encode, parse
from tests.conftest import require


def test_encode_and_parse_every_reply_kind():
    assert encode(["ZREVRANGE", "k", 0, -1]) == (
        b"*4\r\n$9\r\nZREVRANGE\r\n$1\r\nk\r\n$1\r\n0\r\n$2\r\n-1\r\n")
    buf = b"*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:7\r\n+OK\r\n-ERR wrong type\r\n"
    reply, pos = parse(buf, 0)
    assert reply == ["a", None, [7, "OK"]]
    error, end = parse(buf, pos)
    assert isinstance(error, RespError) and "wrong type" in str(error) and end == len(buf)
    assert parse("$6\r\nnaïve\r\n".encode(), 0)[0] == "naïve"  # 6 bytes of UTF-8


@pytest.mark.parametrize("cut", [1, 5, 9, 14, 20])
def test_a_reply_cut_anywhere_is_incomplete_not_wrong(cut):
    full = b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n"
    with pytest.raises(_Incomplete):
        parse(full[:cut], 0)
    assert parse(full, 0) == (["hello", "world"], len(full))


@pytest.fixture
def redis(tmp_path):
    require(redis_binary() is not None, "redis-server not installed (make test installs it)")
    with RedisServer(tmp_path / "redis") as server:
        yield server


def test_concurrent_requests_share_one_connection_and_get_their_own_replies(redis):
    async def scenario():
        client = RespClient(redis.url.rsplit("/", 1)[0] + "/3", timeout_s=2)
        await client.execute([["SET", f"k{i}", f"v{i}"] for i in range(200)])

        async def one(i):
            return await client.execute([["GET", f"k{i}"], ["GET", "missing"], ["INCR", "n"]])

        replies = await asyncio.gather(*(one(i) for i in range(200)))
        db = (await client.execute([["CLIENT", "INFO"]]))[0]
        wrong = (await client.execute([["ZREVRANGE", "k1", 0, -1]]))[0]
        client.close()
        return replies, db, wrong

    replies, info, wrong = asyncio.run(scenario())
    assert [r[:2] for r in replies] == [[f"v{i}", None] for i in range(200)]
    assert sorted(r[2] for r in replies) == list(range(1, 201))
    assert " db=3 " in f" {info} "  # the URL's database was selected
    assert isinstance(wrong, RespError)  # an error reply is returned in its place


def test_a_silent_server_times_out_and_the_next_call_reconnects(redis):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    silent = f"redis://127.0.0.1:{listener.getsockname()[1]}"

    async def scenario():
        client = RespClient(silent, timeout_s=0.2)
        with pytest.raises(RespError, match="no answer within"):
            await client.execute([["PING"]])
        client.host, client.port = "127.0.0.1", redis.port  # the server is back
        assert await client.execute([["PING"]]) == ["PONG"]
        client.close()

    try:
        asyncio.run(scenario())
    finally:
        listener.close()


def test_refused_connections_raise_resp_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario():
        client = RespClient(f"redis://127.0.0.1:{port}", timeout_s=0.5)
        with pytest.raises(RespError):
            await client.execute([["PING"]])

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="scheme"):
        RespClient("http://127.0.0.1:6379", 1.0)
