"""``recpipe bench topn``: exact top-k for every user against the machine's raw matmul speed.

Shapes: U users, N items, D dimensions, k results per user.

Scoring every user against every item costs ``2 U N D`` FLOPs of matrix product; everything
else (selection, exclusions) is overhead. This benchmark times
:func:`algorithms.topk.topk_inner_product` on a structured synthetic catalogue and, in the
same run and on the same shapes, the raw float32 matmul with no selection (numpy with all
BLAS threads, numpy with one single-threaded BLAS per worker thread, and torch; the fastest
is the machine's figure). The baseline printed beside it is the plain method (one matmul per
block, then ``np.argpartition`` and a sort of the k), timed on a sample of users.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from algorithms.topk import topk_inner_product
from bench.ann import structured_vectors, write_json

logger = logging.getLogger(__name__)


def flops(users: int, items: int, dim: int) -> float:
    """Multiply-adds of scoring ``users`` x ``items`` at ``dim`` dimensions, as FLOPs (2 each)."""
    return 2.0 * users * items * dim


def _blocks(n: int, rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def matmul_numpy_blas(users: np.ndarray, items: np.ndarray, block_rows: int, threads: int) -> float:
    """Seconds for ``users @ items.T`` in row blocks with numpy and ``threads`` BLAS threads."""
    buffer = np.empty((block_rows, items.shape[0]), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        began = time.perf_counter()
        for start, stop in _blocks(users.shape[0], block_rows):
            np.matmul(users[start:stop], items.T, out=buffer[: stop - start])
        return time.perf_counter() - began


def matmul_numpy_workers(
    users: np.ndarray, items: np.ndarray, block_rows: int, threads: int
) -> float:
    """Seconds for the same product with ``threads`` workers, each on one BLAS thread."""
    local = threading.local()

    def work(block: tuple[int, int]) -> None:
        start, stop = block
        if not hasattr(local, "buffer"):
            local.buffer = np.empty((block_rows, items.shape[0]), dtype=np.float32)
        np.matmul(users[start:stop], items.T, out=local.buffer[: stop - start])

    with threadpool_limits(limits=1, user_api="blas"):
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, _blocks(users.shape[0], block_rows)))
        return time.perf_counter() - began


def matmul_torch(users: np.ndarray, items: np.ndarray, block_rows: int, threads: int) -> float:
    """Seconds for the same product with ``torch.mm`` on ``threads`` intra-op threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        left, right = torch.from_numpy(users), torch.from_numpy(items).T
        buffer = torch.empty((block_rows, items.shape[0]), dtype=torch.float32)
        began = time.perf_counter()
        for start, stop in _blocks(users.shape[0], block_rows):
            torch.mm(left[start:stop], right, out=buffer[: stop - start])
        return time.perf_counter() - began
    finally:
        torch.set_num_threads(before)


MATMULS: dict[str, Callable[[np.ndarray, np.ndarray, int, int], float]] = {
    "numpy_blas_threads": matmul_numpy_blas,
    "numpy_thread_per_block": matmul_numpy_workers,
    "torch": matmul_torch,
}


def argpartition_baseline(
    users: np.ndarray, items: np.ndarray, k: int, block_rows: int, threads: int
) -> float:
    """Seconds for the plain method: a matmul per block (all BLAS threads), then
    ``np.argpartition`` and a sort of the k best per row."""
    buffer = np.empty((block_rows, items.shape[0]), dtype=np.float32)
    n_items = items.shape[0]
    with threadpool_limits(limits=threads, user_api="blas"):
        began = time.perf_counter()
        for start, stop in _blocks(users.shape[0], block_rows):
            scores = np.matmul(users[start:stop], items.T, out=buffer[: stop - start])
            top = np.argpartition(scores, n_items - k, axis=1)[:, n_items - k :]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
            np.take_along_axis(top, order, axis=1)
        return time.perf_counter() - began


def run(
    users: int,
    items: int,
    dim: int,
    k: int,
    threads: int,
    block_rows: int,
    seed: int,
    baseline_users: int,
) -> dict[str, object]:
    """Time exact top-``k`` for ``users`` against ``items`` and the raw matmul; return figures.

    Returns:
        ``users_per_s``, ``matmul_gflops`` (best raw float32 matmul, GFLOP/s),
        ``fraction_of_matmul`` (useful scoring FLOP/s over that), the per-method matmul
        figures, the argpartition baseline and the run's parameters.
    """
    item_vectors, user_vectors = structured_vectors(items, users, dim, seed)
    logger.info("scoring %d users x %d items x %d dims, top-%d, %d threads",
                users, items, dim, k, threads)
    began, cpu_began = time.perf_counter(), time.process_time()
    topk_inner_product(user_vectors, item_vectors, k, block_rows=block_rows, threads=threads)
    topk_s, topk_cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
    total = flops(users, items, dim)
    matmul, matmul_cpu_s = {}, {}
    for name, method in MATMULS.items():
        cpu_began = time.process_time()
        seconds = method(user_vectors, item_vectors, block_rows, threads)
        matmul_cpu_s[name] = round(time.process_time() - cpu_began, 2)
        matmul[name] = round(total / seconds / 1e9, 1)
        logger.info("raw matmul %s: %.1f GFLOP/s", name, matmul[name])
    best = max(matmul.values())
    sample = user_vectors[: min(baseline_users, users)]
    baseline_s = argpartition_baseline(sample, item_vectors, k, block_rows, threads)
    baseline_gflops = flops(sample.shape[0], items, dim) / baseline_s / 1e9
    useful_gflops = total / topk_s / 1e9
    return {
        "users": users, "items": items, "dim": dim, "k": k, "threads": threads,
        "block_rows": block_rows, "seed": seed,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "topk_seconds": round(topk_s, 3),
        "users_per_s": round(users / topk_s, 1),
        "useful_gflops": round(useful_gflops, 1),
        "matmul_gflops": best,
        "matmul_gflops_by_method": matmul,
        "fraction_of_matmul": round(useful_gflops / best, 3),
        # CPU seconds (all threads) resist other processes sharing the cores; BLAS threads
        # that spin while waiting inflate them for numpy_blas_threads.
        "topk_cpu_seconds": round(topk_cpu_s, 2),
        "matmul_cpu_seconds_by_method": matmul_cpu_s,
        "baseline_argpartition_users": int(sample.shape[0]),
        "baseline_argpartition_users_per_s": round(sample.shape[0] / baseline_s, 1),
        "baseline_argpartition_fraction_of_matmul": round(baseline_gflops / best, 3),
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str]) -> int:
    """``recpipe bench topn [--users U] [--items N] [--dim D] [--k K] [--json OUT]``."""
    from conf import load_settings

    parser = argparse.ArgumentParser(prog="recpipe bench topn", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=_positive, default=100_000)
    parser.add_argument("--items", type=_positive, default=50_000)
    parser.add_argument("--dim", type=_positive, default=128)
    parser.add_argument("--k", type=_positive, default=100)
    parser.add_argument("--threads", type=_positive, default=None,
                        help="worker threads (default: the CPUs this process may use)")
    parser.add_argument("--block-rows", type=_positive, default=None,
                        help="query rows per block (default: index.exact_block_rows)")
    parser.add_argument("--baseline-users", type=_positive, default=4096,
                        help="users timed with the plain argpartition method")
    parser.add_argument("--seed", type=int, default=None, help="default: the settings' seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 users x 3,000 items x 32 (for a test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.items, args.dim, args.baseline_users = 2000, 3000, 32, 512
    if args.k > args.items:
        parser.error(f"--k {args.k} exceeds --items {args.items}")
    settings = load_settings()
    threads = args.threads or len(os.sched_getaffinity(0))
    result = run(
        users=args.users, items=args.items, dim=args.dim, k=args.k, threads=threads,
        block_rows=args.block_rows or settings.index.exact_block_rows,
        seed=settings.seed if args.seed is None else args.seed,
        baseline_users=args.baseline_users,
    )
    print(
        f"exact top-{args.k}, {args.users} users x {args.items} items x {args.dim} dims, "
        f"{threads} threads (OPENBLAS_CORETYPE={result['openblas_coretype']})\n"
        f"  algorithms.topk:           {result['users_per_s']:>10.0f} users/s  "
        f"{result['useful_gflops']:>7.1f} useful GFLOP/s  "
        f"= {result['fraction_of_matmul']:.2f} of raw matmul\n"
        f"  argpartition (base): {result['baseline_argpartition_users_per_s']:>10.0f} users/s"
        f"  {'':>22}= {result['baseline_argpartition_fraction_of_matmul']:.2f} of raw matmul\n"
        f"  raw float32 matmul:  {result['matmul_gflops']:>7.1f} GFLOP/s "
        f"(best of {result['matmul_gflops_by_method']})"
    )
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
