"""``recpipe bench serve --mix production``: the lookup service on a request mix shaped like
production traffic, against a release of production shape.

The release: ``--users`` users (default 1,000,000) and ``--items`` items (100,000) with
structured vectors for all of them (clusters in a low-rank subspace, :mod:`bench.ann`);
precomputed lists (home feed 100, email 20) only for the 30% most active users, the head of
the request distribution below, as precompute for active users would choose; 20 similar
items per item; FAISS shards over the item vectors with ``efSearch`` tuned on user vectors
as the nightly's export tunes it. A real ``redis-server`` is the real-time store.

The mix (users drawn from a Zipf distribution, s = 1.1, over all users, rank r being user
``r``; items from a Zipf distribution over items): 65% home feed (a fifth with filters), 15%
similar items, 5% email batch of 50 users, 5% re-rank of 200 items, 10% ``POST
/events/interactions`` of 1-5 events. ``wrk`` (C, with a Lua script of the mix, in its own
process) measures the maximum requests/s; an open-loop generator at ``--rate`` (1,000)
requests/s measures p50/p99 per endpoint without coordinated omission.

Reported, with the answer cache on and off: p50/p99 per endpoint at the fixed rate, the
mix's maximum requests/s; with it off: home-feed requests alone (same Zipf users) against
``/healthz`` in alternating rounds, the share of answers served through the ANN shards
(from the service's ``recpipe_answers_total``), a fixed-rate run whose users all lack a
precomputed list (``ann_p99_ms``), non-2xx answers, VmRSS and USS per worker, the mix's
maximum requests/s with 1 and 2 workers, and where a cache-off home-feed answer spends its
time (release lookup and rules, serialisation, the Redis round trip), measured in process.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.load import Request, fixed_rate, rss_mb, run_wrk

logger = logging.getLogger(__name__)

MIX = (("user", 0.65), ("similar", 0.15), ("batch", 0.05), ("rerank", 0.05), ("events", 0.10))
"""Endpoints of the mix and their shares of requests."""
LISTED_SHARE = 0.30
ZIPF_S = 1.1
FILTERS = ('{"exclude_categories":["Horror"]}', '{"include_categories":["Drama","Comedy"]}',
           '{"exclude_item_ids":["i00000","i00001","i00002"],"blend_similar":false}')
"""Filters carried by a fifth of the user requests (in turn)."""
API_KEY = "bench-key"
WRK_REQUESTS = 5_000
"""Distinct requests in a wrk script (drawn from the mix; the open-loop runs use 20,000)."""


def zipf_cdf(n: int, s: float = ZIPF_S) -> np.ndarray:
    """Cumulative probabilities of ranks ``0..n-1`` under Zipf(s)."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -s
    return np.cumsum(weights) / weights.sum()


def user_id(rank: int) -> str:
    return f"u{rank:07d}"


def item_id(rank: int) -> str:
    return f"i{rank:05d}"


def mix_requests(n_users: int, n_items: int, count: int, seed: int = 11) -> list[Request]:
    """``count`` requests of the mix, drawn as the Lua script draws them."""
    from urllib.parse import quote

    rng = np.random.default_rng(seed)
    users_cdf, items_cdf = zipf_cdf(n_users), zipf_cdf(n_items)
    kinds = rng.choice([k for k, _ in MIX], size=count, p=[p for _, p in MIX])

    def users(m: int) -> list[int]:
        return np.searchsorted(users_cdf, rng.random(m)).tolist()

    def items(m: int) -> list[int]:
        return np.searchsorted(items_cdf, rng.random(m)).tolist()

    out: list[Request] = []
    for k, kind in enumerate(kinds.tolist()):
        if kind == "user":
            path = f"/recommendations/users/{user_id(users(1)[0])}?n=20"
            if k % 5 == 0:
                path += "&filters=" + quote(FILTERS[(k // 5) % len(FILTERS)])
            out.append(("user", "GET", path, None))
        elif kind == "similar":
            out.append(("similar", "GET",
                        f"/recommendations/items/{item_id(items(1)[0])}/similar?n=20", None))
        elif kind == "batch":
            body = json.dumps({"user_ids": [user_id(u) for u in users(50)], "surface": "email",
                               "n": 10})
            out.append(("batch", "POST", "/recommendations/batch", body))
        elif kind == "rerank":
            body = json.dumps({"user_id": user_id(users(1)[0]),
                               "item_ids": [item_id(i) for i in items(200)]})
            out.append(("rerank", "POST", "/recommendations/rerank", body))
        else:
            m = int(rng.integers(1, 6))
            body = json.dumps({"events": [
                {"user_id": user_id(u), "item_id": item_id(i), "event_type": "click"}
                for u, i in zip(users(m), items(m), strict=True)]})
            out.append(("events", "POST", "/events/interactions", body))
    return out


def lua_script(requests: list[Request]) -> str:
    """A wrk script that sends ``requests`` in a random order (each thread its own)."""
    rows = ",".join(f"{{{json.dumps(m)},{json.dumps(p)},{json.dumps(b or '')}}}"
                    for _, m, p, b in requests)
    return (f"local reqs = {{{rows}}}\n"
            f'local json_headers = {{["Content-Type"] = "application/json", '
            f'["X-API-Key"] = "{API_KEY}"}}\n'
            "math.randomseed(7)\n"
            "request = function()\n"
            "  local r = reqs[math.random(1, #reqs)]\n"
            '  if r[1] == "GET" then return wrk.format("GET", r[2]) end\n'
            "  return wrk.format(r[1], r[2], json_headers, r[3])\n"
            "end\n")


def build_release(args: argparse.Namespace, root: Path, workdir: Path) -> dict[str, Any]:
    """Write and publish the release; its build figures."""
    from bench.ann import structured_vectors
    from bench.release_synth import synthetic_release_data
    from conf.index import IndexSettings
    from serving_export.index.build import build_index
    from serving_export.release.publish import publish
    from serving_export.release.writer import write_release

    start = time.perf_counter()
    items, users = structured_vectors(args.items, args.users, args.dim, seed=3)
    listed = int(LISTED_SHARE * args.users)
    data = synthetic_release_data(args.users, args.items, topn=100, similar_k=20,
                                  surface_topn={"email": 20}, listed_users=listed,
                                  vectors=(items, users), seed=5)
    data_s = time.perf_counter() - start
    settings = IndexSettings()
    sample = np.random.default_rng(1).choice(args.users, size=min(args.users, 5000),
                                             replace=False)
    t0 = time.perf_counter()
    index = build_index(items, np.arange(args.items, dtype=np.int64), settings,
                        queries=users[np.sort(sample)])
    faiss_s = time.perf_counter() - t0
    data.faiss_dir = index.save(workdir / "faiss-build" / "faiss")
    t0 = time.perf_counter()
    write_release(root, "mix", data)
    publish(root, "mix")
    tuning = index.tuning
    return {"data_s": data_s, "faiss_build_s": faiss_s, "write_s": time.perf_counter() - t0,
            "listed_users": listed, "shards": len(index.shards),
            "ef_search": index.ef_search, "tuned_recall": tuning.recall if tuning else None}


def answer_counts(url: str) -> dict[str, float]:
    """``recpipe_answers_total`` by source, over the recommendation endpoints."""
    import httpx

    counts: dict[str, float] = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("recpipe_answers_total{"):
            source = line.split('source="', 1)[1].split('"', 1)[0]
            counts[source] = counts.get(source, 0.0) + float(line.split()[-1])
    return counts


def worker_pids(url: str, want: int) -> list[int]:
    """The pids of the service's workers (asked over fresh connections until all seen)."""
    import httpx

    seen: set[int] = set()
    clients = []
    try:
        for _ in range(200):
            client = httpx.Client(base_url=url, timeout=5)
            clients.append(client)
            seen.add(client.get("/healthz").json()["worker"])
            if len(seen) >= want:
                break
    finally:
        for client in clients:
            client.close()
    return sorted(seen)


def uss_mb(pid: int) -> float:
    """Unique set size (private pages) of a process, in MiB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def memory(url: str, workers: int) -> dict[str, Any]:
    pids = worker_pids(url, workers)
    return {"pids": pids, "rss_mb": [rss_mb(p) for p in pids],
            "uss_mb": [uss_mb(p) for p in pids],
            "rss_file_mb": [rss_mb(p, "RssFile") for p in pids]}


def phases(root: Path, redis_url: str, n_users: int, count: int) -> dict[str, float]:
    """Microseconds per cache-off home-feed answer in each phase, in process: the Redis round
    trip for the user's recent items, the answer's lookup and rules, its serialisation."""
    import asyncio

    from conf import load_settings
    from serving_export.release.reader import Release
    from serving_export.service import answers
    from serving_export.service.realtime import make_store
    from serving_export.service.recommend import Blend, recommend_user

    rel = Release.load(root / "mix", verify=False)
    rel.answer_cache_limit = 0
    settings = load_settings(overrides={"serving": {"redis_url": redis_url}},
                             environ={}).serving
    store = make_store(settings)
    cdf = zipf_cdf(n_users)
    ranks = np.searchsorted(cdf, np.random.default_rng(5).random(count)).tolist()
    ids = [user_id(r) for r in ranks]
    blend = Blend(settings.blend_share, settings.blend_seeds, settings.blend_per_seed)

    async def fetch() -> tuple[list, float]:
        out = []
        start = time.perf_counter()
        for uid in ids:
            out.append(await store.recent(uid))
        elapsed = time.perf_counter() - start
        await store.close()
        return out, elapsed

    recents, store_s = asyncio.run(fetch())
    start = time.perf_counter()
    results = [recommend_user(rel, "home_feed", uid, 20, None, recent, blend)
               for uid, recent in zip(ids, recents, strict=True)]
    rules_s = time.perf_counter() - start
    start = time.perf_counter()
    for uid, (source, entries, _) in zip(ids, results, strict=True):
        answers.user_answer(rel, uid, "home_feed", source, False, entries)
    json_s = time.perf_counter() - start
    return {"redis_us": 1e6 * store_s / count, "lookup_rules_us": 1e6 * rules_s / count,
            "serialise_us": 1e6 * json_s / count, "answers": count,
            "ann_answers": sum(r[0] == "ann" for r in results)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.redis_server import RedisServer
    from bench.serve import _serving

    workdir = Path(args.workdir)
    root = workdir / "releases"
    results: dict[str, Any] = {"users": args.users, "items": args.items, "mix": dict(MIX)}
    results["build"] = build_release(args, root, workdir)
    listed = results["build"]["listed_users"]
    requests = mix_requests(args.users, args.items, 20_000)
    script = lua_script(requests[:WRK_REQUESTS])  # LuaJIT caps a chunk's constants
    feed_only = [r for r in requests[:WRK_REQUESTS] if r[0] == "user"]
    feed_script = lua_script(feed_only)
    health_script = lua_script([("healthz", "GET", "/healthz?" + r[2].split("/")[-1], None)
                                for r in feed_only])
    rng = np.random.default_rng(9)
    unlisted = [("user", "GET", f"/recommendations/users/{user_id(int(r))}?n=20", None)
                for r in rng.integers(listed, args.users, size=20_000)]
    sec, conns = args.seconds, args.connections
    headers = {"X-API-Key": API_KEY}
    with RedisServer(workdir / "redis") as redis:
        env = {"RECPIPE_SERVING__API_KEY": API_KEY}
        common = ("--redis-url", redis.url)
        for cache in (True, False):
            label = "cache_on" if cache else "cache_off"
            with _serving(root, workdir, answer_cache=cache, extra_args=common,
                          extra_env=env, ready_s=300) as (_proc, url, ready):
                results.setdefault("load_s", ready["load_s"])
                run_wrk(url, script, 2, conns)  # warm-up
                before = answer_counts(url)
                rate = fixed_rate(url, 0, args.rate, args.rate_seconds, requests=requests,
                                  headers=headers)
                mix_max = [run_wrk(url, script, sec, conns) for _ in range(args.rounds)]
                after = answer_counts(url)
                part: dict[str, Any] = {
                    "fixed_rate": rate, "p50_ms": rate["p50_ms"], "p99_ms": rate["p99_ms"],
                    "mix_rps": statistics.median(r["rps"] for r in mix_max),
                    "mix_runs": mix_max,
                    "non_2xx": rate["errors"] + sum(r["non_2xx"] for r in mix_max),
                    "answers": {k: after.get(k, 0) - before.get(k, 0) for k in after},
                }
                if not cache:
                    rounds = [(run_wrk(url, health_script, sec, conns),
                               run_wrk(url, feed_script, sec, conns))
                              for _ in range(args.rounds)]
                    part["home_feed_rps"] = statistics.median(f["rps"] for _, f in rounds)
                    part["healthz_rps"] = statistics.median(h["rps"] for h, _ in rounds)
                    part["ratio_to_healthz"] = statistics.median(
                        f["rps"] / h["rps"] for h, f in rounds)
                    part["rounds"] = [{"healthz_rps": h["rps"], "home_feed_rps": f["rps"]}
                                      for h, f in rounds]
                    part["ann"] = fixed_rate(url, 0, args.rate, args.rate_seconds,
                                             requests=unlisted)
                    part["memory"] = memory(url, 1)
                results[label] = part
        with _serving(root, workdir, answer_cache=False,
                      extra_args=(*common, "--workers", "2"), extra_env=env,
                      ready_s=300) as (_proc, url, _ready):
            run_wrk(url, script, 2, conns)
            two = [run_wrk(url, script, sec, conns) for _ in range(args.rounds)]
            rate = fixed_rate(url, 0, args.rate, args.rate_seconds, requests=requests,
                              headers=headers)
            ann = fixed_rate(url, 0, args.rate, args.rate_seconds, requests=unlisted)
            results["two_workers"] = {"mix_rps": statistics.median(r["rps"] for r in two),
                                      "fixed_rate": rate, "ann": ann,
                                      "non_2xx": (sum(r["non_2xx"] for r in two)
                                                  + rate["errors"] + ann["errors"]),
                                      "memory": memory(url, 2)}
        results["phases"] = phases(root, redis.url, args.users, args.phase_answers)
    off = results["cache_off"]
    answered = sum(off["answers"].values())
    results.update(
        p99_ms=off["p99_ms"], ratio_to_healthz=off["ratio_to_healthz"],
        ann_share=off["answers"].get("ann", 0) / answered if answered else float("nan"),
        ann_p99_ms=off["ann"]["p99_ms"],
        non_2xx=(results["cache_on"]["non_2xx"] + off["non_2xx"] + off["ann"]["errors"]
                 + results["two_workers"]["non_2xx"]),
        rss_mb=off["memory"]["rss_mb"][0], uss_mb=off["memory"]["uss_mb"][0],
        rps_1_worker=off["mix_rps"], rps_2_workers=results["two_workers"]["mix_rps"],
        p99_ms_2_workers=results["two_workers"]["fixed_rate"]["p99_ms"],
        ann_p99_ms_2_workers=results["two_workers"]["ann"]["p99_ms"],
    )
    return results


def report(r: dict[str, Any]) -> None:
    b = r["build"]
    print(f"release: {r['users']:,} users ({b['listed_users']:,} with lists) x {r['items']:,} "
          f"items; FAISS {b['shards']} shards, efSearch {b['ef_search']} (recall@100 "
          f"{b['tuned_recall']}); load {r['load_s']:.2f} s")
    for label in ("cache_on", "cache_off"):
        part = r[label]
        fr = part["fixed_rate"]
        per = ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}"
                        for k, v in fr.get("by_label", {}).items())
        print(f"{label}: mix at {fr['target_rps']:.0f} req/s (achieved "
              f"{fr['achieved_rps']:.0f}): p50 {part['p50_ms']:.2f} ms, p99 "
              f"{part['p99_ms']:.2f} ms; per endpoint p50/p99 ms: {per}; mix max "
              f"{part['mix_rps']:.0f} req/s; non-2xx {part['non_2xx']:.0f}")
    off = r["cache_off"]
    print(f"home feed alone {off['home_feed_rps']:.0f} req/s vs /healthz "
          f"{off['healthz_rps']:.0f}: ratio {off['ratio_to_healthz']:.2f} (target >= 0.7)")
    print(f"answers by source (cache off): {off['answers']}; ANN share {r['ann_share']:.3f}; "
          f"users without a list at {off['ann']['target_rps']:.0f} req/s: p50 "
          f"{off['ann']['p50_ms']:.2f} ms, p99 {r['ann_p99_ms']:.2f} ms (target < 10)")
    m2 = r["two_workers"]["memory"]
    print(f"1 worker: {r['rps_1_worker']:.0f} req/s, RSS {r['rss_mb']:.0f} MiB, USS "
          f"{r['uss_mb']:.0f} MiB; 2 workers: {r['rps_2_workers']:.0f} req/s, RSS "
          f"{[round(x) for x in m2['rss_mb']]} MiB, USS {[round(x) for x in m2['uss_mb']]} MiB")
    two = r["two_workers"]
    print(f"2 workers (cache off) at {two['fixed_rate']['target_rps']:.0f} req/s: mix p50 "
          f"{two['fixed_rate']['p50_ms']:.2f} ms, p99 {r['p99_ms_2_workers']:.2f} ms; users "
          f"without a list p50 {two['ann']['p50_ms']:.2f} ms, p99 "
          f"{r['ann_p99_ms_2_workers']:.2f} ms")
    p = r["phases"]
    print(f"cache-off home feed, in process per answer: Redis {p['redis_us']:.0f} us, lookup "
          f"and rules {p['lookup_rules_us']:.0f} us, serialisation {p['serialise_us']:.0f} us")
