"""A throwaway single-node Kafka broker (KRaft) on loopback, for tests and benchmarks.

It runs ``scripts/kafka_broker.sh`` on the jars ``make deps`` put in ``.kafka/lib``.
:meth:`KafkaBroker.kill` is a ``kill -9`` (the bench and the tests use it to crash the
broker); :meth:`KafkaBroker.start` after it restarts the broker on the same data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "kafka_broker.sh"
LIB = REPO / ".kafka" / "lib"


def kafka_installed() -> bool:
    """True when the broker's jars are installed (``make deps`` fetches them)."""
    return LIB.is_dir() and any(LIB.glob("kafka_2.13-*.jar"))


class KafkaBroker:
    """A broker process with its data in ``workdir``; a context manager that stops it."""

    def __init__(self, workdir: str | Path, port: int | None = None):
        if not kafka_installed():
            raise FileNotFoundError(f"Kafka jars not installed in {LIB} (make deps)")
        self.workdir = Path(workdir)
        self.port = port or self._free_pair()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.start()

    @staticmethod
    def _free_pair() -> int:
        """A port whose successor (the controller's) also looks free."""
        for _ in range(50):
            port = free_port()
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 1))
            except (OSError, OverflowError):
                continue
            return port
        raise RuntimeError("no pair of free ports")

    def _script(self, action: str, timeout_s: float = 120) -> None:
        subprocess.run(["bash", str(SCRIPT), action, str(self.workdir), str(self.port)],
                       check=True, timeout=timeout_s, capture_output=True, text=True)

    def start(self) -> None:
        """Start the broker and wait until it answers (formats the data only once)."""
        try:
            self._script("start")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"kafka broker did not start: {exc.stdout}{exc.stderr}") from exc

    def pid(self) -> int | None:
        path = self.workdir / "broker.pid"
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def kill(self) -> None:
        """``kill -9`` the broker and wait until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        if self.pid() is not None:
            self._script("stop")

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
