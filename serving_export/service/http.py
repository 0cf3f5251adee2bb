"""The HTTP server side of the service: uvicorn's httptools protocol, one write per response.

uvicorn writes a response's status line and headers, then its body, as two socket writes:
two TCP segments and, on a lookup answer of a few KiB, two wake-ups of the client. Here the
status line and headers are held back and leave in the same write as the first body chunk
(or alone when the response ends without one, or the connection closes). Streaming bodies
still flow chunk by chunk; only the head waits for the first chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeldHeadTransport:
    """A connection's transport as the protocol sees it: the first write of a started
    response (its head) is held and joined to the next write.

    Args:
        transport: the socket's transport.
        protocol: the connection's protocol; its current ``cycle`` tells whether a response
            has started (a ``100 Continue`` interim answer, written before, is not held).
    """

    __slots__ = ("_transport", "_protocol", "_held", "_fresh")

    def __init__(self, transport: asyncio.Transport, protocol: Any):
        self._transport, self._protocol = transport, protocol
        self._held: bytes | None = None
        self._fresh = True  # nothing written yet for the current response

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif self._fresh:
            cycle = self._protocol.cycle
            if cycle is not None and cycle.response_started and not cycle.response_complete:
                self._fresh = False
                self._held = data
                return
        self._transport.write(data)

    def end_of_response(self) -> None:
        """Write what is held; the next response's head will be held again."""
        self._fresh = True
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.end_of_response()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`HeldHeadTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(HeldHeadTransport(transport, self))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.end_of_response()
        super().on_response_complete()


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the service runs with (``recpipe serve`` and tests)."""
    settings: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on",
                                "server_header": False, "date_header": False}
    settings.update(options)
    return uvicorn.Config(app, host=host, port=port, http=OneWriteProtocol, **settings)
