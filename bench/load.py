"""Load generators of the serving benchmarks, each in its own process: ``wrk`` (closed loop,
maximum throughput, with Lua scripts for the request mix), an open-loop client at a fixed
rate (latency without coordinated omission), and ``redis-benchmark`` as the baseline."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MiB (from /proc): ``VmRSS`` (all), ``RssAnon`` (the
    process's own heap) or ``RssFile`` (mapped file pages: the release's page cache, shared
    and reclaimable)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until the service at ``url`` answers ``/readyz`` with 200; its body.

    Raises:
        RuntimeError: the process exited (with its last stderr, if captured) or the service
            was not ready in time.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/readyz", timeout=1)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"service exited with {proc.returncode}: {err}")
        time.sleep(0.1)
    raise RuntimeError(f"service at {url} not ready within {timeout_s:.0f} s")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """p50/p99 (ms) and requests/s from ``wrk --latency`` output."""
    out: dict[str, float] = {}
    for pct, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        match = re.search(rf"^\s+{re.escape(pct)}\s+(\S+)", output, re.M)
        if match:
            out[key] = _ms(match.group(1))
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match:
        out["rps"] = float(match.group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return out


def run_wrk(url: str, script: str | None, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk (1 thread) against ``url``, optionally with a Lua script."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script or "")
        lua = fh.name
    try:
        if script:
            cmd += ["-s", lua]
        done = subprocess.run([*cmd, url], capture_output=True, text=True, check=True,
                              timeout=seconds + 30)
    finally:
        os.unlink(lua)
    return parse_wrk(done.stdout)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median requests/s (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]


def user_script(n_users: int, n: int) -> str:
    return (f"math.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", "
            f"string.format(\"/recommendations/users/u%07d?n={n}\", "
            f"math.random(0, {n_users - 1})))\nend\n")


def healthz_script(n_users: int, n: int) -> str:
    """``/healthz`` through the same per-request Lua as :func:`user_script` (a random
    path of the same length): the ceiling with the load generator's cost per request equal."""
    return (f"math.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", "
            f"string.format(\"/healthz?u=u%07d&n={n}\", "
            f"math.random(0, {n_users - 1})))\nend\n")


def similar_script(n_items: int, n: int) -> str:
    return (f"math.randomseed(7)\nrequest = function()\n  return wrk.format(\"GET\", "
            f"string.format(\"/recommendations/items/i%05d/similar?n={n}\", "
            f"math.random(0, {n_items - 1})))\nend\n")


def batch_script(n_users: int, batch: int) -> str:
    users = ",".join(f'"u{k % n_users:07d}"' for k in range(0, batch * 7, 7))
    body = json.dumps(f'{{"user_ids":[{users}],"surface":"email","n":20}}')
    return (f'wrk.method = "POST"\nwrk.body = {body}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n')


Request = tuple[str, str, str, str | None]
"""One request of a fixed-rate run: (label, method, path, JSON body or None)."""


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


async def open_loop(url: str, requests: list[Request], rate: float, seconds: float,
                    connections: int, headers: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """Send ``requests`` (cycled) at a fixed rate over keep-alive HTTP/1.1 connections (a
    minimal client, so the generator itself stays cheap); latency counts from the scheduled
    send time, so a slow server cannot hide queueing (no coordinated omission). Figures
    overall and per request label; ``errors`` counts answers other than 2xx."""
    host, port = url.removeprefix("http://").split(":")
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: dict[str, list[float]] = {}
    errors = 0
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    wire = []
    for _, method, path, body in requests:
        data = (body or "").encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        wire.append((head + "\r\n").encode() + data)

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (job := await queue.get()) is not None:
                k, scheduled = job
                n = k % len(requests)
                writer.write(wire[n])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                await reader.readexactly(length)
                errors += not 200 <= status < 300
                latencies.setdefault(requests[n][0], []).append(
                    (time.perf_counter() - scheduled) * 1e3)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.2
    for k in range(total):
        scheduled = start + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((k, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=seconds + 30)
    elapsed = time.perf_counter() - start
    every = sorted(v for values in latencies.values() for v in values)
    out: dict[str, Any] = {"p50_ms": _percentile(every, 0.5), "p99_ms": _percentile(every, 0.99),
                           "achieved_rps": total / elapsed, "target_rps": rate,
                           "requests": total, "errors": errors}
    if len(latencies) > 1:
        out["by_label"] = {label: {"p50_ms": _percentile(sorted(v), 0.5),
                                   "p99_ms": _percentile(sorted(v), 0.99), "requests": len(v)}
                           for label, v in sorted(latencies.items())}
    return out


def user_requests(n_users: int, count: int = 10_000) -> list[Request]:
    """GET requests for users' recommendations spread over ``n_users`` users."""
    return [("user", "GET", f"/recommendations/users/u{(k * 7919) % n_users:07d}?n=20", None)
            for k in range(count)]


def fixed_rate(url: str, n_users: int, rate: float, seconds: float,
               paths: list[str] | None = None, requests: list[Request] | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run :func:`open_loop` in a separate Python process; return its figures. Requests:
    ``requests``, else GETs of ``paths``, else users' recommendations."""
    if requests is None:
        requests = ([("get", "GET", p, None) for p in paths] if paths
                    else user_requests(n_users))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"requests": requests, "headers": headers}, fh)
    code = (f"import asyncio, json, sys; sys.path.insert(0, {str(REPO)!r}); "
            f"from bench.load import open_loop; job = json.load(open({fh.name!r})); "
            f"print(json.dumps(asyncio.run(open_loop({url!r}, "
            f"[tuple(r) for r in job['requests']], {rate}, {seconds}, 64, job['headers']))))")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=seconds + 60)
    finally:
        os.unlink(fh.name)
    return json.loads(done.stdout.strip().splitlines()[-1])


def redis_get(workdir: Path, size: int, requests: int) -> dict[str, float]:
    """``redis-benchmark`` GET of a ``size``-byte value, 50 clients, on a private server."""
    from bench.redis_server import RedisServer

    if shutil.which("redis-benchmark") is None:
        return {"skipped": "redis-benchmark not installed"}  # type: ignore[dict-item]
    with RedisServer(workdir / "redis") as server:
        done = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", "set,get",
             "-n", str(requests), "-c", "50", "-d", str(size), "--csv"],
            capture_output=True, text=True, check=True, timeout=120)
    for line in done.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0] == "GET":
            out = {"rps": float(cells[1]), "value_bytes": size}
            if len(cells) >= 7:
                out.update(p50_ms=float(cells[4]), p99_ms=float(cells[6]))
            return out
    return {"skipped": f"unparsed redis-benchmark output: {done.stdout[:200]}"}  # type: ignore


def paths_script(paths: list[str], seed: int = 7) -> str:
    """A wrk Lua script requesting uniformly random entries of ``paths``."""
    table = ",".join(json.dumps(p) for p in paths)
    return (f"math.randomseed({seed})\nlocal paths = {{{table}}}\nrequest = function()\n"
            f"  return wrk.format(\"GET\", paths[math.random(1, #paths)])\nend\n")
