"""``recpipe bench ann-layouts``: bytes per vector, recall@100 and ms/query of FAISS index
layouts, for sizing a catalogue too large for HNSW over full vectors.

One structured synthetic catalogue (:func:`bench.ann.structured_vectors`, inner-product
search on unnormalised vectors, as ALS retrieval does) is indexed by every layout of
:data:`LAYOUTS`; recall@100 is measured against exact ``IndexFlatIP`` on held-out user
vectors, at each ``nprobe`` / ``efSearch`` of a small grid, so the table shows each layout's
recall/speed curve rather than one point. Bytes per vector is the serialized index size over
the catalogue size (what a memory-mapped shard holds in RAM). ``RFlat`` layouts re-rank the
compressed search's ``k_factor * k`` best with the full vectors: their RAM is the codes,
their full vectors can stay on disk (memory-mapped) and are read only for the re-ranked rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.ann import structured_vectors
from conf.errors import UsageError
from evaluation.metrics import ann_recall

LAYOUTS = {
    "Flat": ("Flat", None),
    "HNSW32,Flat": ("HNSW32,Flat", "efSearch"),
    "IVF{nlist},Flat": ("IVF{nlist},Flat", "nprobe"),
    "IVF{nlist},PQ32": ("IVF{nlist},PQ32", "nprobe"),
    "OPQ32,IVF{nlist},PQ32": ("OPQ32,IVF{nlist},PQ32", "nprobe"),
    "IVF{nlist},PQ32,RFlat": ("IVF{nlist},PQ32,RFlat", "nprobe"),
    "IVF{nlist},PQ16,RFlat": ("IVF{nlist},PQ16,RFlat", "nprobe"),
}
GRID = {"nprobe": (8, 32, 128), "efSearch": (128, 256, 512)}


def set_knob(index, knob: str | None, value: int | None) -> None:
    """``nprobe`` of an IVF layout or ``efSearch`` of an HNSW one (inside an ``RFlat``
    wrapper, whose re-rank takes the 4k best, and an ``OPQ`` transform)."""
    import faiss

    outer = faiss.downcast_index(index)
    base = outer
    if isinstance(outer, faiss.IndexRefine):
        outer.k_factor = 4
        base = faiss.downcast_index(outer.base_index)
    if knob == "nprobe":
        faiss.extract_index_ivf(base).nprobe = value
    elif knob == "efSearch":
        base.hnsw.efSearch = value


def measure(name: str, spec: str, knob: str | None, items: np.ndarray, queries: np.ndarray,
            truth: np.ndarray, k: int, nlist: int, train_n: int, seed: int) -> dict:
    import faiss

    d = items.shape[1]
    index = faiss.index_factory(d, spec.format(nlist=nlist), faiss.METRIC_INNER_PRODUCT)
    began = time.perf_counter()
    if not index.is_trained:
        sample = np.random.default_rng(seed).choice(len(items), min(train_n, len(items)),
                                                    replace=False)
        index.train(items[np.sort(sample)])
    index.add(items)
    build_s = time.perf_counter() - began
    size = faiss.serialize_index(index).nbytes
    refine = "RFlat" in spec
    # an RFlat index serializes its full vectors too; in RAM only the codes need to be
    codes = size - (items.nbytes if refine else 0)
    points = []
    for value in GRID.get(knob, (None,)):
        set_knob(index, knob, value)
        began = time.perf_counter()
        _, found = index.search(queries, k)
        ms = (time.perf_counter() - began) * 1000 / len(queries)
        points.append({knob or "exact": value, "ms_per_query": round(ms, 3),
                       "recall_at_100": round(ann_recall(found, truth), 4)})
    n = len(items)
    return {"layout": name.format(nlist=nlist), "bytes_per_vector_ram": round(codes / n, 1),
            "bytes_per_vector_file": round(size / n, 1), "build_s": round(build_s, 1),
            "points": points}


def main(argv: list[str]) -> int:
    """``recpipe bench ann-layouts [--items N] [--dim D] [--queries Q] [--json OUT]``."""
    import faiss

    parser = argparse.ArgumentParser(prog="recpipe bench ann-layouts",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=2,
                        help="FAISS threads (1 thread trains PQ about 25x slower here)")
    parser.add_argument("--quick", action="store_true", help="5,000 items, 100 queries")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    items_n, queries_n = (5_000, 100) if args.quick else (args.items, args.queries)
    if items_n < 1_000 or queries_n < 1 or args.dim < 8:
        raise UsageError(f"need at least 1,000 items, 1 query and 8 dimensions, got "
                         f"{items_n}, {queries_n}, {args.dim}")
    faiss.omp_set_num_threads(args.threads)
    seed, k = 7, 100
    items, queries = structured_vectors(items_n, queries_n, args.dim, seed)
    nlist = int(4 * np.sqrt(items_n))  # FAISS's rule of thumb: 4 to 16 sqrt(N) lists
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(items)
    _, truth = flat.search(queries, k)
    rows = []
    for name, (spec, knob) in LAYOUTS.items():
        row = measure(name, spec, knob, items, queries, truth, k, nlist, 64 * nlist, seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"items": items_n, "dim": args.dim, "queries": queries_n, "k": k,
              "nlist": nlist, "threads": args.threads, "layouts": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
