"""Run the service in a background thread on a loopback port (tests and notebooks)."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

from bench.redis_server import free_port
from serving_export.service.http import server_config


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; a context manager.

    Args:
        app: the ASGI application.
        wait_ready_s: on enter, wait this long for ``/readyz`` to answer 200 (0: only wait
            for the socket).
    """

    def __init__(self, app: FastAPI, wait_ready_s: float = 10.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.wait_ready_s = wait_ready_s

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        if self.wait_ready_s:
            self.wait_ready(self.wait_ready_s)
        return self

    def wait_ready(self, timeout_s: float, release_id: str | None = None) -> dict:
        """Poll ``/readyz`` until ready (and serving ``release_id`` if given)."""
        deadline = time.monotonic() + timeout_s
        last: dict = {}
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/readyz", timeout=2)
            last = r.json()
            if r.status_code == 200 and release_id in (None, last.get("release_id")):
                return last
            time.sleep(0.02)
        raise TimeoutError(f"service not ready in {timeout_s}s: {last}")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
