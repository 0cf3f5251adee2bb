"""``recpipe bench serve``: latency and throughput of the lookup service.

Builds a synthetic MovieLens-sized release (943 users x 1,682 items, top-100 per user),
starts ``recpipe serve`` on 127.0.0.1 in a subprocess and drives it from separate processes:
``wrk`` (closed loop, maximum throughput) for user recommendations, similar items, batch
and ``/healthz`` (user recommendations and ``/healthz`` alternate for ``--rounds`` rounds);
an open-loop generator at a fixed rate (default 1,000 req/s) for the
latency target; ``redis-benchmark`` GET of a value as large as one answer as the baseline.
``--scale-users 1000000`` also builds a 1M-user x top-100 release and measures its load
time and resident memory in a fresh process.

Targets: p99 < 10 ms at 1,000 req/s on one worker; user recs >= 70% of ``/healthz`` rps;
release load < 2 s. Every request goes to 127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.load import (
    batch_script,
    fixed_rate,
    healthz_script,
    median_run,
    redis_get,
    rss_mb,
    run_wrk,
    similar_script,
    user_script,
    wait_ready,
)
from bench.serve_scale import scale
from conf.errors import RecpipeError, UsageError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


def _start_service(root: Path, workdir: Path, port: int, answer_cache: bool = True,
                   extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None
                   ) -> subprocess.Popen:
    env = {**os.environ, "RECPIPE_SERVING__RELOAD_POLL_S": "1", "PYTHONPATH": str(REPO)}
    env.pop("RECPIPE_SERVING__REDIS_URL", None)
    env.pop("RECPIPE_SERVING__ANSWER_CACHE_ENTRIES", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if not answer_cache:
        env["RECPIPE_SERVING__ANSWER_CACHE_ENTRIES"] = "0"
    env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "recpipe", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--releases-root", str(root), "--spool-dir", str(workdir / "spool"), *extra_args],
        env=env, cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _serving(root: Path, workdir: Path, answer_cache: bool = True,
             extra_args: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
             ready_s: float = 60.0) -> Iterator[tuple[subprocess.Popen, str, dict[str, Any]]]:
    """``recpipe serve`` on a free loopback port, ready: (process, url, ``/readyz`` body)."""
    from bench.redis_server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start_service(root, workdir, port, answer_cache, extra_args, extra_env)
    try:
        yield proc, url, wait_ready(url, proc, ready_s)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alternate(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """``/healthz`` and user recs in alternating wrk runs (after a short warm-up of both), so
    a slow spell of the machine hits both sides: each side's median run, and the median of
    the rounds' ratios."""
    sec, conns = args.seconds, args.connections
    run_wrk(url + "/healthz", None, 1, conns)
    run_wrk(url, user_script(args.users, 20), 1, conns)
    rounds = [(run_wrk(url + "/healthz", None, sec, conns),
               run_wrk(url, user_script(args.users, 20), sec, conns))
              for _ in range(args.rounds)]
    return {"healthz": median_run([h for h, _ in rounds]),
            "users": median_run([u for _, u in rounds]),
            "ratio": statistics.median(u["rps"] / h["rps"] for h, u in rounds),
            "rounds": [{"healthz_rps": h["rps"], "user_rps": u["rps"]} for h, u in rounds]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, serve, measure; return the figures (see the module docstring)."""
    import httpx

    from bench.release_synth import synthetic_release_data
    from serving_export.release.publish import publish
    from serving_export.release.writer import write_release

    if shutil.which("wrk") is None:
        raise RecpipeError("wrk is not installed (apt-get install -y wrk; make test installs it)")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recpipe-bench-serve-"))
    root = workdir / "releases"
    results: dict[str, Any] = {"users": args.users, "items": args.items, "topn": args.topn}
    t0 = time.perf_counter()
    data = synthetic_release_data(args.users, args.items, topn=args.topn, dim=args.dim)
    write_release(root, "bench", data)
    publish(root, "bench")
    results["build_s"] = time.perf_counter() - t0
    sec, conns = args.seconds, args.connections
    with _serving(root, workdir) as (proc, url, ready):
        results["load_s"] = ready["load_s"]
        answer = httpx.get(url + "/recommendations/users/u0000001", params={"n": 20}).content
        results["answer_bytes"] = len(answer)
        main = _alternate(url, args)
        health, users = main["healthz"], main["users"]
        health_scripted = run_wrk(url, healthz_script(args.users, 20), sec, conns)
        similar = run_wrk(url, similar_script(args.items, 20), sec, conns)
        batch = run_wrk(url + "/recommendations/batch", batch_script(args.users, 100), sec,
                        min(conns, 8))
        rate = fixed_rate(url, args.users, args.rate, args.rate_seconds)
        results["rss_mb"] = rss_mb(proc.pid)
        results["rss_anon_mb"] = rss_mb(proc.pid, "RssAnon")
        results.update(
            p50_ms=rate["p50_ms"], p99_ms=rate["p99_ms"], rps=users["rps"],
            healthz_rps=health["rps"], ratio_to_healthz=main["ratio"], rounds=main["rounds"],
            healthz_scripted_rps=health_scripted["rps"],
            ratio_to_healthz_scripted=users["rps"] / health_scripted["rps"],
            healthz_scripted=health_scripted,
            fixed_rate=rate, user_recs_max=users, similar=similar, batch_100_users=batch,
            healthz=health,
        )
    # The same again with the answer cache off: every answer is serialised afresh (the
    # bench's 943 users all fit in the cache, which a service of many users would not).
    with _serving(root, workdir, answer_cache=False) as (_, url, _ready):
        cold = _alternate(url, args)
        results["uncached"] = {"rps": cold["users"]["rps"], "healthz_rps": cold["healthz"]["rps"],
                               "ratio_to_healthz": cold["ratio"], "rounds": cold["rounds"],
                               "user_recs_max": cold["users"]}
    results["redis_get"] = redis_get(workdir, results.get("answer_bytes", 2000),
                                     args.redis_requests)
    if args.scale_users:
        results["scale"] = scale(workdir, args.scale_users, args.scale_topn, args.dim)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _print(results: dict[str, Any]) -> None:
    r = results
    print(f"release {r['users']} users x {r['items']} items, top-{r['topn']}: "
          f"load {r['load_s']:.3f}s (target < 2s), service RSS {r['rss_mb']:.0f} MiB")
    fr = r["fixed_rate"]
    print(f"user recs at {fr['target_rps']:.0f} req/s (achieved {fr['achieved_rps']:.0f}): "
          f"p50 {fr['p50_ms']:.2f} ms, p99 {fr['p99_ms']:.2f} ms (target p99 < 10 ms), "
          f"errors {fr['errors']}")
    for name in ("healthz", "healthz_scripted", "user_recs_max", "similar", "batch_100_users"):
        w = r[name]
        print(f"wrk {name:<16} {w['rps']:>9.0f} req/s  p50 {w['p50_ms']:.2f} ms  "
              f"p99 {w['p99_ms']:.2f} ms  non-2xx {w['non_2xx']:.0f}")
    rounds = ", ".join(f"{x['user_rps']:.0f}/{x['healthz_rps']:.0f}" for x in r["rounds"])
    print(f"rounds (user recs / healthz req/s): {rounds}")
    print(f"user recs / healthz rps: {r['ratio_to_healthz']:.2f} (median of the rounds; "
          f"target >= 0.70); against "
          f"/healthz driven by the same per-request Lua script: "
          f"{r['ratio_to_healthz_scripted']:.2f}")
    u = r["uncached"]
    rounds = ", ".join(f"{x['user_rps']:.0f}/{x['healthz_rps']:.0f}" for x in u["rounds"])
    print(f"answer cache off: user recs {u['rps']:.0f} req/s, /healthz {u['healthz_rps']:.0f}, "
          f"ratio {u['ratio_to_healthz']:.2f} (rounds {rounds})")
    rg = r["redis_get"]
    if "rps" in rg:
        print(f"baseline redis GET {rg['value_bytes']} B: {rg['rps']:.0f} req/s, "
              f"p50 {rg.get('p50_ms', float('nan')):.2f} ms, p99 "
              f"{rg.get('p99_ms', float('nan')):.2f} ms")
    if "scale" in r:
        s = r["scale"]
        print(f"scale {s['users']} users x top-{s['topn']} ({s['release_mb']:.0f} MiB on disk): "
              f"load {s['load_s']:.2f}s, RSS {s['rss_mb_after_load']:.0f} MiB after load, "
              f"{s['rss_mb_after_lookups']:.0f} MiB after {s['lookups']} answers "
              f"(own heap {s['rss_anon_mb_after_lookups']:.0f} MiB, mapped release pages "
              f"{s['rss_file_mb_after_lookups']:.0f} MiB) "
              f"({s['answer_us']:.0f} us each); map without hashing {s['map_only_s']:.2f}s; "
              f"a dict id index would take {s['dict_index_build_s']:.2f}s and "
              f"{s['dict_index_mb']:.0f} MiB")


def main(argv: list[str]) -> int:
    """``recpipe bench serve [--json OUT] [--users U] [--scale-users N] ...``."""
    parser = argparse.ArgumentParser(prog="recpipe bench serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--mix", choices=["production"],
                        help="the production request mix on a production-shaped release "
                             "(bench/serve_mix.py; default sizes 1,000,000 users x 100,000 "
                             "items)")
    parser.add_argument("--users", type=int, help="default: 943 (mix: 1,000,000)")
    parser.add_argument("--items", type=int, help="default: 1,682 (mix: 100,000)")
    parser.add_argument("--phase-answers", type=int, default=5000,
                        help="mix: answers timed in process per phase")
    parser.add_argument("--topn", type=int, default=100)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating /healthz and user-recs runs (median reported)")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate req/s")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--scale-users", type=int, default=0,
                        help="also measure load time and RSS of this many users (1000000)")
    parser.add_argument("--scale-topn", type=int, default=100)
    parser.add_argument("--workdir", help="keep the releases here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true",
                        help="a small release, one-second runs, one round (for a test)")
    args = parser.parse_args(argv)
    if args.mix:
        return _main_mix(args)
    args.users = args.users or 943
    args.items = args.items or 1682
    args.redis_requests = 100_000
    if args.quick:
        args.users, args.items, args.topn, args.seconds, args.rounds = 200, 500, 50, 1, 1
        args.rate, args.rate_seconds, args.redis_requests, args.scale_users = 200.0, 1.0, 10_000, 0
    for name in ("users", "items", "topn", "seconds", "connections", "rounds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.items <= args.topn or args.rate <= 0:
        raise UsageError("need --items > --topn and --rate > 0")
    try:
        results = run(args)
    except subprocess.CalledProcessError as exc:
        raise RecpipeError(f"{exc.cmd[0]} failed: {exc.stderr or exc}") from exc
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


def _main_mix(args: argparse.Namespace) -> int:
    from bench import serve_mix

    if shutil.which("wrk") is None:
        raise RecpipeError("wrk is not installed (apt-get install -y wrk; make test installs it)")
    args.users = args.users or 1_000_000
    args.items = args.items or 100_000
    if args.quick:
        args.users, args.items, args.seconds, args.rounds = 20_000, 2_000, 1, 1
        args.rate, args.rate_seconds, args.phase_answers = 200.0, 1.0, 500
    if args.users < 10 or args.items <= 100 or args.rate <= 0:
        raise UsageError("need --users >= 10, --items > 100 and --rate > 0")
    keep = bool(args.workdir)
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="recpipe-bench-mix-")
    try:
        results = serve_mix.run(args)
    except subprocess.CalledProcessError as exc:
        raise RecpipeError(f"{exc.cmd[0]} failed: {exc.stderr or exc}") from exc
    finally:
        if not keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    serve_mix.report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
