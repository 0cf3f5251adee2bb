"""``recpipe bench NAME``: the benchmarks, each printing measured figures beside a baseline
measured in the same run (``--json OUT`` writes them too)."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "als": ("bench.als", "implicit vs Spark MLlib ALS, seconds per iteration"),
    "als-lineage": ("bench.als_lineage",
                    "Spark ALS iterations before the JVM stack overflows (checkpoints)"),
    "ann": ("bench.ann", "sharded HNSW vs exact search: recall@100 and ms/query"),
    "topn": ("bench.topn", "exact blocked top-100 vs raw matmul throughput"),
    "quality": ("bench.quality", "NDCG/recall under published protocols vs published models"),
    "ranker": ("bench.ranker", "ranker vs retrieval-only; CTR check"),
    "ann-layouts": ("bench.ann_layouts", "FAISS layouts: bytes/vector, recall@100, ms/query"),
    "similar": ("bench.similar", "similar items of a 37k-item catalogue: build, serve, memory"),
    "scale": ("bench.scale", "the nightly's cost per task over a ladder of data sizes"),
    "events": ("bench.events", "events through Kafka while consumer, broker and service are "
                               "killed: lost, duplicates, events/s vs the file spool"),
    "serve": ("bench.serve", "lookup service latency/throughput vs /healthz and Redis GET"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in BENCHES:
        lines = ["usage: recpipe bench NAME [ARGS...]", "", "benchmarks:"]
        lines += [f"  {name:<11} {help_}" for name, (_, help_) in BENCHES.items()]
        print("\n".join(lines), file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else
              sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(BENCHES[argv[0]][0])
    return int(module.main(argv[1:]) or 0)
