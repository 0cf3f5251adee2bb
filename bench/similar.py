"""``recpipe bench similar``: similar items for a catalogue of tens of thousands of items,
built by the nightly's own stage and served from the release.

1. ``recpipe data synth`` makes a catalogue of ``--items`` items with the interactions of
   ``--users`` users (``--events`` events over 28 days) and content (categories, titles);
   about 5% of the items are cold: they have content but no interactions.
2. The nightly's tasks up to the item context run as Airflow runs them, each its own
   ``recpipe`` process (ingest, catalogue, training matrix, ALS, content, popularity,
   co-visitation, item context).
3. The similar-items stage (:func:`jobs.topn.write_similar_items`, ``similar.k = --k``) runs
   in its own process, timed, with its peak memory: first with an HNSW graph over the item
   vectors (``similar.exact_max_items = 1``, the method for catalogues too large to compare
   every pair), then exactly, every pair of items compared (the default up to 200,000
   items): ``build_s`` is the exact run, and the graph's lists are scored against it
   (share of the exact pairs it finds).
4. A release holding the exact lists (with the catalogue and its popular lists) is served by
   ``recpipe serve``: ``wrk`` asks for uniformly random items (every item equally, so no
   cache of hot items helps) at full speed for the maximum requests/s, alternating with
   ``/healthz`` (the service's ceiling); an open-loop client at ``--rate`` requests/s gives
   p50/p99 without coordinated omission; ``rss_mb`` is the service's VmRSS after the load,
   the mapped release's page-cache pages included.

Targets (issue 15): p99 under 10 ms at 1,000 requests/s, ``rss_mb`` under 500, build within
10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.load import fixed_rate, paths_script, rss_mb, run_wrk
from bench.scale import pipeline_env
from bench.scale_measure import run_task
from conf.errors import RecpipeError, UsageError

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
END_DATE = "2024-06-30"
STAGE = ("import json, sys; from conf import load_settings; from jobs.lake import Lake; "
         "from jobs.topn import write_similar_items; settings = load_settings(); "
         "print(json.dumps(write_similar_items(Lake(settings), settings, sys.argv[1])))")
"""The similar-items stage as one process (what the ``topn`` task runs after the lists)."""


def build_catalogue(args: argparse.Namespace, work: Path, env: dict[str, str]) -> float:
    """Synthesize the data and run the nightly up to the item context; return seconds."""
    recpipe = [sys.executable, "-m", "recpipe"]
    start = time.perf_counter()
    steps = [
        ([*recpipe, "data", "synth", "--users", str(args.users), "--items", str(args.items),
          "--events", str(args.events), "--days", "28", "--seed", str(args.seed),
          "--end-date", END_DATE, "--out", str(work / "landing")], "synth"),
        ([*recpipe, "run", "nightly", "--date", END_DATE, "--to-task", "item_context"],
         "nightly"),
    ]
    for argv, name in steps:
        done = run_task(argv, env, work / f"{name}.log", REPO)
        if done.code:
            raise RecpipeError(f"{name} failed; see {work / f'{name}.log'}")
    return time.perf_counter() - start


def similar_stage(work: Path, env: dict[str, str], k: int, exact: bool) -> dict[str, Any]:
    """Run the similar-items stage in its own process; its seconds, peak memory, rows."""
    stage_env = {**env, "RECPIPE_SIMILAR__K": str(k)}
    if not exact:
        stage_env["RECPIPE_SIMILAR__EXACT_MAX_ITEMS"] = "1"
    log = work / f"similar-{'exact' if exact else 'graph'}.log"
    done = run_task([sys.executable, "-c", STAGE, END_DATE], stage_env, log, REPO)
    if done.code:
        raise RecpipeError(f"the similar-items stage failed; see {log}")
    rows = json.loads(log.read_text().strip().splitlines()[-1])[0]
    return {**asdict(done), "rows": rows}


def lake_pairs(env: dict[str, str]) -> tuple[Any, Any, Any, int]:
    """``gold/similar_items`` as int64 pair keys over the item context's ids (the same for
    both runs), each list's owner row and the pairs' scores; and how many items have a
    list."""
    import numpy as np
    import pyarrow.compute as pc

    from conf import load_settings
    from jobs.lake import Lake
    from jobs.tables import ITEM_CONTEXT, SIMILAR_ITEMS

    lake = Lake(load_settings(environ=env))
    ids = lake.read_arrow(ITEM_CONTEXT.name, [END_DATE], columns=["item_id"]).column(
        "item_id").combine_chunks()
    table = lake.read_arrow(SIMILAR_ITEMS.name, [END_DATE],
                            columns=["item_id", "similar_item_id", "score"])
    a, b = (np.asarray(pc.index_in(table.column(c), value_set=ids).to_numpy(
        zero_copy_only=False), np.int64) for c in ("item_id", "similar_item_id"))
    scores = table.column("score").to_numpy()
    return a * len(ids) + b, a, scores, len(np.unique(a))


def overlap(graph: Any, exact: Any) -> float:
    """Share of the exact pairs the graph run also kept."""
    import numpy as np

    return float(np.isin(exact, graph).mean()) if len(exact) else float("nan")


def score_share(graph: tuple[Any, Any], exact: tuple[Any, Any]) -> float:
    """Mean over items of (summed score of the graph run's list) / (the exact list's): how
    close the graph's lists come to the best possible, where near-ties make the pair overlap
    understate it."""
    import numpy as np

    n = int(max(graph[0].max(initial=0), exact[0].max(initial=0))) + 1
    got = np.bincount(graph[0], weights=graph[1], minlength=n)
    best = np.bincount(exact[0], weights=exact[1], minlength=n)
    mine = best > 0
    return float(np.mean(got[mine] / best[mine])) if mine.any() else float("nan")


def write_serving_release(env: dict[str, str], root: Path) -> tuple[list[str], float]:
    """A release of the lake's similar lists, catalogue and popular lists (one user's list
    to satisfy the format); returns the item ids and the write seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from algorithms.segments import ALL
    from conf import load_settings
    from jobs.asof import latest_partition_at_or_before
    from jobs.lake import Lake
    from jobs.tables import POPULARITY, SILVER_ITEMS, SIMILAR_ITEMS
    from serving_export.release.data import GateVerdict, ReleaseData
    from serving_export.release.format import OVERALL
    from serving_export.release.publish import publish
    from serving_export.release.writer import write_release

    lake = Lake(load_settings(environ=env))
    start = time.perf_counter()
    pop = lake.read_arrow(POPULARITY.name, [END_DATE], columns=["segment", "item_id", "score",
                                                                "rank"])
    pop = pop.set_column(0, "segment", pc.if_else(pc.equal(pop.column("segment"), ALL),
                                                   OVERALL, pop.column("segment")))
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, END_DATE)
    items = lake.read_arrow(SILVER_ITEMS.name, [items_ds], columns=[
        "item_id", "title", "categories", "available", "boost"])
    head = pop.slice(0, 10)
    data = ReleaseData(
        ds=END_DATE, gate=GateVerdict(True, ("bench",)),
        topn={"home_feed": pa.table({"user_id": ["bench-user"] * head.num_rows,
                                     "item_id": head.column("item_id"),
                                     "score": head.column("score")})},
        similar_items=lake.read_arrow(SIMILAR_ITEMS.name, [END_DATE], columns=[
            "item_id", "similar_item_id", "score", "rank"]),
        popularity=pop, items=items)
    write_release(root, "similar-bench", data)
    publish(root, "similar-bench")
    return items.column("item_id").to_pylist(), time.perf_counter() - start


def serve(args: argparse.Namespace, root: Path, work: Path, item_ids: list[str]
          ) -> dict[str, Any]:
    """Drive ``recpipe serve`` with similar-items lookups; the figures."""
    from bench.serve import _serving

    paths = [f"/recommendations/items/{i}/similar?n={args.n}" for i in item_ids]
    script = paths_script(paths)
    health = paths_script([f"/healthz?i={i}&n={args.n}" for i in item_ids])
    sec, conns = args.seconds, args.connections
    with _serving(root, work, answer_cache=False) as (proc, url, ready):
        run_wrk(url, script, 1, conns)  # warm-up
        rounds = [(run_wrk(url, health, sec, conns), run_wrk(url, script, sec, conns))
                  for _ in range(args.rounds)]
        shuffled = paths[::7] + paths[1::7] + paths[2::7] + paths[3::7] + paths[4::7] \
            + paths[5::7] + paths[6::7]
        rate = fixed_rate(url, 0, args.rate, args.rate_seconds, shuffled)
        return {
            "load_s": ready["load_s"],
            "rps": statistics.median(s["rps"] for _, s in rounds),
            "healthz_rps": statistics.median(h["rps"] for h, _ in rounds),
            "ratio_to_healthz": statistics.median(s["rps"] / h["rps"] for h, s in rounds),
            "non_2xx": sum(s["non_2xx"] for _, s in rounds) + rate["errors"],
            "p50_ms": rate["p50_ms"], "p99_ms": rate["p99_ms"], "fixed_rate": rate,
            "wrk_p99_ms": statistics.median(s["p99_ms"] for _, s in rounds),
            "rss_mb": rss_mb(proc.pid), "rss_anon_mb": rss_mb(proc.pid, "RssAnon"),
            "rss_file_mb": rss_mb(proc.pid, "RssFile"),
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RecpipeError("wrk is not installed (apt-get install -y wrk; make test installs it)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="recpipe-bench-similar-"))
    work.mkdir(parents=True, exist_ok=True)
    env = pipeline_env(work)
    env["RECPIPE_LANDING"] = str(work / "landing")
    results: dict[str, Any] = {"items": args.items, "users": args.users,
                               "events": args.events, "k": args.k}
    results["upstream_s"] = build_catalogue(args, work, env)
    graph = similar_stage(work, env, args.k, exact=False)
    graph_pairs, graph_owner, graph_scores, _ = lake_pairs(env)
    exact = similar_stage(work, env, args.k, exact=True)
    exact_pairs, exact_owner, exact_scores, with_lists = lake_pairs(env)
    results.update(
        build_s=exact["seconds"], build_peak_mb=exact["peak_rss_mb"],
        pairs_kept=exact["rows"], items_with_lists=with_lists,
        pairs_considered=with_lists * (with_lists - 1),
        graph={"build_s": graph["seconds"], "peak_mb": graph["peak_rss_mb"],
               "pairs_kept": graph["rows"],
               "share_of_exact_pairs": overlap(graph_pairs, exact_pairs),
               "share_of_exact_score": score_share((graph_owner, graph_scores),
                                                   (exact_owner, exact_scores))},
    )
    item_ids, results["release_s"] = write_serving_release(env, work / "releases")
    results.update(serve(args, work / "releases", work, item_ids))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _print(r: dict[str, Any]) -> None:
    g = r["graph"]
    print(f"catalogue: {r['items']} items, {r['users']} users, {r['events']} events "
          f"(nightly up to the item context: {r['upstream_s']:.0f} s)")
    print(f"similar items, k={r['k']}, every pair ({r['pairs_considered']:,} pairs of "
          f"{r['items_with_lists']} items with vectors): {r['build_s']:.1f} s, peak "
          f"{r['build_peak_mb']:.0f} MiB, {r['pairs_kept']:,} pairs kept (target: 10 min)")
    print(f"HNSW graph instead: {g['build_s']:.1f} s, peak {g['peak_mb']:.0f} MiB, finds "
          f"{g['share_of_exact_pairs']:.3f} of the exact pairs; its lists' summed score is "
          f"{g['share_of_exact_score']:.3f} of the exact lists'")
    fr = r["fixed_rate"]
    print(f"served at {fr['target_rps']:.0f} req/s (achieved {fr['achieved_rps']:.0f}): p50 "
          f"{r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms (target < 10 ms); max "
          f"{r['rps']:.0f} req/s = {r['ratio_to_healthz']:.2f} of /healthz "
          f"({r['healthz_rps']:.0f}); non-2xx {r['non_2xx']:.0f}")
    print(f"service memory after the load: VmRSS {r['rss_mb']:.0f} MiB (target < 500; own "
          f"heap {r['rss_anon_mb']:.0f}, mapped release pages {r['rss_file_mb']:.0f})")


def main(argv: list[str]) -> int:
    """``recpipe bench similar [--items 37000] [--k 100] [--json OUT]``."""
    parser = argparse.ArgumentParser(prog="recpipe bench similar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--items", type=int, default=37_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--k", type=int, default=100, help="similar items kept per item")
    parser.add_argument("--n", type=int, default=20, help="items per answer")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate req/s")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", help="keep the lake and release here (default: temp)")
    parser.add_argument("--quick", action="store_true",
                        help="a small catalogue and one-second runs (for a test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.users, args.events, args.k = 1_500, 1_000, 30_000, 20
        args.seconds, args.rounds, args.rate, args.rate_seconds = 1, 1, 200.0, 1.0
    for name in ("items", "users", "events", "k", "n", "seconds", "rounds", "connections"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.k > 1000 or args.rate <= 0:
        raise UsageError("need --k <= 1000 and --rate > 0")
    results = run(args)
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
