"""The service's outermost ASGI middleware: request body size limit and endpoint metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving_export.service.errors import JSON, STATUS_CODES, BodyTooLarge, error_body
from serving_export.service.metrics import Metrics, endpoint_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class Guard:
    """Pure ASGI middleware: body size limit (413) and per-endpoint latency/status metrics."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics, max_body: int):
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        endpoint = endpoint_of(scope["path"])
        status = 500
        max_body = self.max_body

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                for key, value in scope["headers"]:
                    if key == b"content-length":
                        try:
                            length = int(value)
                        except ValueError:
                            length = -1
                        if length < 0 or length > max_body:
                            code = 413 if length > max_body else 400
                            msg = (f"request body larger than {max_body} bytes"
                                   if code == 413 else "malformed Content-Length")
                            await send_wrapper({"type": "http.response.start", "status": code,
                                                "headers": [(b"content-type", JSON.encode())]})
                            await send({"type": "http.response.body", "body": error_body(
                                code, STATUS_CODES[code], msg)})
                            return
                received = 0

                async def limited_receive() -> Message:
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > max_body:
                            raise BodyTooLarge(max_body)
                    return message

                await self.app(scope, limited_receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - start)
