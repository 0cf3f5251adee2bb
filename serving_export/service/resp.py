"""A minimal Redis client for the service's hot path: one connection, requests pipelined.

Redis answers a connection's commands in the order it received them, so concurrent requests
can share one connection: each writes its commands at once and waits on a future queued in
that order, and the protocol's ``data_received`` parses replies (RESP2) as they arrive and
resolves the futures front to back. A lookup then costs one write, one parse and one future
(about 20 us of CPU here) where ``redis.asyncio`` spent about 180 us on its connection pool,
pipeline object and response machinery (``hiredis`` did not change that).

Any failure (connect, timeout, a closed socket, a protocol error) closes the connection and
fails every waiting request with :class:`RespError`; the next call connects again. Callers
decide what a failure means (the real-time store serves degraded answers).

URLs: ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

Reply = Any
"""A parsed reply: ``str`` (bulk or simple strings, UTF-8), ``int``, ``None`` or a list."""


class RespError(Exception):
    """Redis could not answer (or answered with an error reply)."""


def encode(command: Sequence[str | bytes | int | float]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


def parse(buf: bytes | bytearray, pos: int) -> tuple[Reply, int]:
    """The reply starting at ``buf[pos]`` and the position after it.

    Raises:
        _Incomplete: the reply is not all in ``buf`` yet.
        RespError: an error reply (``-ERR ...``) or a malformed one.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos:pos + 1], buf[pos + 1:end]
    pos = end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + size]).decode("utf-8", "replace"), pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return bytes(line).decode(), pos
    if kind == b"-":
        return RespError(bytes(line).decode("utf-8", "replace")), pos
    raise RespError(f"malformed reply starting {bytes(buf[pos - 2 - len(line):end])[:40]!r}")


class _Protocol(asyncio.Protocol):
    """Parses replies and hands them to the waiting requests in order.

    Commands queued in one pass of the event loop leave in one write (concurrent requests
    share a syscall). One timer per connection watches the oldest waiting request: past its
    deadline the connection is failed (its replies' order cannot be trusted any more).
    """

    def __init__(self, timeout_s: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[tuple[asyncio.Future, int, list, float]] = deque()
        self.outgoing: list[bytes] = []
        self.closed = False
        self.timeout_s = timeout_s
        self._flush_soon = False
        self._watch: asyncio.TimerHandle | None = None

    def send(self, data: bytes, future: asyncio.Future, count: int) -> None:
        """Queue a request's commands (``count`` replies expected) for the next write."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self.waiting.append((future, count, [], deadline))
        self.outgoing.append(data)
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        if self._watch is None:
            self._watch = loop.call_at(deadline, self._check_deadline)

    def _flush(self) -> None:
        self._flush_soon = False
        if self.outgoing and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def _check_deadline(self) -> None:
        self._watch = None
        if not self.waiting or self.closed:
            return
        loop = asyncio.get_running_loop()
        oldest = self.waiting[0][3]
        if oldest <= loop.time():
            self.fail(RespError(f"no answer within {self.timeout_s}s"))
        else:
            self._watch = loop.call_at(oldest, self._check_deadline)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.waiting and pos < len(self.buffer):
                reply, pos = parse(self.buffer, pos)
                future, count, replies, _ = self.waiting[0]
                replies.append(reply)
                if len(replies) == count:
                    self.waiting.popleft()
                    if not future.done():
                        future.set_result(replies)
        except _Incomplete:
            pass
        except (RespError, ValueError) as exc:
            self.fail(RespError(f"bad reply from redis: {exc}"))
            return
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespError(f"connection lost: {exc}" if exc else "connection closed"))

    def fail(self, exc: Exception) -> None:
        self.closed = True
        self.outgoing.clear()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its event loop is already closed
                self.transport.close()


class RespClient:
    """Redis over one pipelined connection (see the module docstring).

    Args:
        url: ``redis://`` or ``rediss://`` URL.
        timeout_s: limit of a connect and of every call.
    """

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r} in {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"Redis URL {url!r}: the path must be a database number")
        self.db = int(path) if path else 0
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        _, protocol = await loop.create_connection(lambda: _Protocol(self.timeout_s),
                                                   self.host, self.port, ssl=context)
        hello: list[list[str | int]] = []
        if self.password is not None:
            hello.append(["AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            hello.append(["SELECT", self.db])
        if hello:
            replies = await self._send(protocol, hello)
            errors = [r for r in replies if isinstance(r, RespError)]
            if errors:
                protocol.fail(errors[0])
                raise errors[0]
        return protocol

    async def _connection(self) -> _Protocol:
        if self._protocol is not None and not self._protocol.closed:
            return self._protocol
        if self._connecting is None:  # one connect shared by every waiting request
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            self._protocol = await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None
        return self._protocol

    @staticmethod
    def _send(protocol: _Protocol, commands: Sequence[Sequence[str | bytes | int | float]]
              ) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        protocol.send(b"".join(encode(c) for c in commands), future, len(commands))
        return future

    async def execute(self, commands: Sequence[Sequence[str | bytes | int | float]]
                      ) -> list[Reply]:
        """Send ``commands`` together and return their replies, in order; an error reply
        is returned as a :class:`RespError` in its place.

        Raises:
            RespError: no connection, no answer within the timeout, or the connection broke.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            try:
                async with asyncio.timeout(self.timeout_s):
                    protocol = await self._connection()
            except TimeoutError as exc:
                self.close()
                raise RespError(f"no connection within {self.timeout_s}s") from exc
            except OSError as exc:
                self.close()
                raise RespError(f"{type(exc).__name__}: {exc}") from exc
        return await self._send(protocol, commands)

    def close(self) -> None:
        """Close the connection (waiting requests fail); the next call reconnects."""
        if self._protocol is not None:
            self._protocol.fail(RespError("connection closed by the client"))
            self._protocol = None
