"""``recpipe bench ann``: recall@100 and ms/query of the sharded HNSW beside exact search.

Two catalogues, each searched in the same run by the sharded HNSW index
(:mod:`serving_export.faiss_index`, ``efSearch`` tuned to the configured recall target on one
sample of user vectors) and by exact ``IndexFlatIP``, then measured on a second, disjoint
sample of user vectors:

- ``movielens``: real ALS vectors, either given (``--item-vectors``, ``--user-vectors``) or
  fitted here with ``implicit`` on MovieLens 100K;
- ``synthetic``: ``--items`` x ``--dim`` vectors with structure (a power-law mix of clusters
  in a low-rank subspace, plus noise and popularity-like norms), because isotropic Gaussian
  vectors make HNSW recall look much worse than on real embeddings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from conf.errors import RecallTargetNotMet
from conf.index import IndexSettings
from evaluation.metrics import ann_recall
from serving_export.index.build import build_sharded_hnsw
from serving_export.index.shards import omp_threads
from serving_export.index.tuning import exact_search, tune_ef_search

logger = logging.getLogger(__name__)

_CHUNK = 65_536


def structured_vectors(
    items: int,
    users: int,
    dim: int,
    seed: int,
    rank: int = 32,
    clusters: int = 512,
    noise: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Item and user vectors drawn from one latent world with structure.

    Each vector is a cluster centre (clusters weighted by a power law, ``1/(c+1)``) plus
    within-cluster spread, living in a random ``rank``-dimensional subspace of ``dim``, plus
    isotropic noise of scale ``noise`` per dimension. Item vectors are then scaled by
    log-normal norms, as popular items get larger ALS vectors.

    Returns:
        ``(items, users)``: (N, D) and (U, D) float32.

    Raises:
        ValueError: a size below 1, or ``rank > dim``.
    """
    if min(items, dim, rank, clusters) < 1 or users < 0:
        raise ValueError(f"sizes must be positive: items={items} users={users} dim={dim} "
                         f"rank={rank} clusters={clusters}")
    if rank > dim:
        raise ValueError(f"rank {rank} exceeds dim {dim}")
    rng = np.random.default_rng(seed)
    basis = (rng.standard_normal((rank, dim)) / math.sqrt(rank)).astype(np.float32)
    centres = rng.standard_normal((clusters, rank)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1)
    weights /= weights.sum()

    def draw(n: int, spread: float, norm_sigma: float) -> np.ndarray:
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            latent = centres[rng.choice(clusters, size=m, p=weights)]
            latent += spread * rng.standard_normal((m, rank), dtype=np.float32)
            block = latent @ basis
            block += noise * rng.standard_normal((m, dim), dtype=np.float32)
            if norm_sigma:
                scale = rng.lognormal(0.0, norm_sigma, size=m).astype(np.float32)
                block *= (scale / np.linalg.norm(block, axis=1))[:, None]
            out[start : start + m] = block
        return out

    return draw(items, spread=0.5, norm_sigma=0.25), draw(users, spread=0.7, norm_sigma=0.0)


def movielens_als_vectors(
    data_dir: Path, factors: int, regularization: float, alpha: float, iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """ALS item and user vectors of MovieLens 100K, fitted with ``implicit`` on ratings.

    The confidence of a rating r (1-5) is ``1 + alpha * r / 5``.

    Returns:
        ``(items, users)``: (1682, F) and (943, F) float32.
    """
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from jobs.datasets.movielens import fetch_movielens_100k

    source = fetch_movielens_100k(data_dir / "cache") / "ml-100k.inter"
    table = np.loadtxt(source, skiprows=1, usecols=(0, 1, 2), dtype=np.float64)
    users, user_rows = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    items, item_cols = np.unique(table[:, 1].astype(np.int64), return_inverse=True)
    confidence = (1.0 + alpha * table[:, 2] / 5.0).astype(np.float32)
    matrix = sp.csr_matrix((confidence, (user_rows, item_cols)), shape=(users.size, items.size))
    with threadpool_limits(1, "blas"):  # implicit checks the BLAS threads when created
        model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                        iterations=iterations, random_state=seed)
        model.fit(matrix, show_progress=False)
    return (np.ascontiguousarray(model.item_factors, dtype=np.float32),
            np.ascontiguousarray(model.user_factors, dtype=np.float32))


def compare(
    items: np.ndarray,
    users: np.ndarray,
    settings: IndexSettings,
    queries: int,
    k: int,
    threads: int,
    seed: int,
) -> dict[str, object]:
    """Build, tune and measure the sharded HNSW against exact search on one catalogue.

    Users are split at random (``seed``) into a tuning sample (``settings.tune_queries``) and
    a disjoint evaluation sample (``queries``); both recall and timings are measured on the
    evaluation sample only, with ``threads`` FAISS threads, as batch time over query count.

    Returns:
        ``items``, ``recall_at_100`` (recall@``k``), ``ann_ms_per_query``,
        ``exact_ms_per_query``, ``ef_search``, ``tuning_recall``, ``build_s`` and more.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(users.shape[0])
    n_eval = min(queries, max(1, users.shape[0] // 2))
    evaluate, tune = users[order[:n_eval]], users[order[n_eval:]]
    with omp_threads(threads):
        began = time.perf_counter()
        index = build_sharded_hnsw(
            items, np.arange(items.shape[0]), shards=settings.shard_count(items.shape[0]),
            hnsw_m=settings.hnsw_m,
            ef_construction=settings.ef_construction,
            ef_search=settings.ef_search_candidates[-1], augment=settings.augment,
        )
        build_s = time.perf_counter() - began
        try:
            tuning = tune_ef_search(
                index, tune, k=k, target=settings.recall_target,
                candidates=settings.ef_search_candidates, sample=settings.tune_queries,
                seed=seed,
            )
            measured, tuning_recall, target_met = tuning.measured, tuning.recall, True
        except RecallTargetNotMet as exc:  # report the best candidate instead of stopping
            logger.warning("%s", exc)
            index.ef_search = exc.best_ef_search
            measured, tuning_recall, target_met = exc.measured, exc.best_recall, False
        began = time.perf_counter()
        truth, _ = exact_search(items, evaluate, min(k, items.shape[0]))
        exact_s = time.perf_counter() - began
        began = time.perf_counter()
        found, _ = index.search(evaluate, min(k, items.shape[0]))
        ann_s = time.perf_counter() - began
    return {
        "items": int(items.shape[0]), "dim": int(items.shape[1]), "queries": int(n_eval),
        "k": k, "shards": len(index.shards), "hnsw_m": settings.hnsw_m,
        "augmented": settings.augment,
        "ef_construction": settings.ef_construction, "ef_search": index.ef_search,
        "recall_at_100": round(ann_recall(found, truth), 4),
        "ann_ms_per_query": round(1e3 * ann_s / n_eval, 4),
        "exact_ms_per_query": round(1e3 * exact_s / n_eval, 4),
        "recall_target": settings.recall_target, "target_met_in_tuning": target_met,
        "tuning_recall": tuning_recall, "tuning_queries": min(settings.tune_queries, len(tune)),
        "tuning_measured": {str(ef): r for ef, r in measured.items()},
        "build_s": round(build_s, 2), "threads": threads,
    }


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Write ``payload`` as indented JSON to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _load_vectors(path: Path, name: str) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name} {path}: cannot read a .npy array ({exc})") from exc
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"{name} {path}: expected a 2-D float array, got {values.shape} "
                         f"{values.dtype}")
    return np.ascontiguousarray(values, dtype=np.float32)


def main(argv: list[str]) -> int:
    """``recpipe bench ann [--items N] [--dim D] [--queries Q] [--json OUT]``."""
    from conf import load_settings

    parser = argparse.ArgumentParser(prog="recpipe bench ann", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=_positive, default=1_000_000,
                        help="synthetic catalogue size (default 1M; smaller for quick runs)")
    parser.add_argument("--dim", type=_positive, default=128, help="synthetic dimensions")
    parser.add_argument("--users", type=_positive, default=20_000,
                        help="synthetic user vectors to draw tuning and evaluation queries from")
    parser.add_argument("--queries", type=_positive, default=1000,
                        help="evaluation queries per catalogue (disjoint from tuning ones)")
    parser.add_argument("--item-vectors", type=Path, help="real item vectors (.npy, N x D)")
    parser.add_argument("--user-vectors", type=Path, help="real user vectors (.npy, U x D)")
    parser.add_argument("--datasets", default="movielens,synthetic",
                        help="comma-separated subset of movielens,synthetic")
    parser.add_argument("--threads", type=_positive, default=None,
                        help="FAISS threads (default: the CPUs this process may use)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true",
                        help="a small synthetic catalogue only (4,000 x 32; for a test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.dim, args.users, args.queries = 4000, 32, 2000, 100
        args.datasets = "synthetic"
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(datasets) - {"movielens", "synthetic"}
    if unknown or not datasets:
        parser.error(f"--datasets: unknown {sorted(unknown) or 'empty list'}")
    if (args.item_vectors is None) != (args.user_vectors is None):
        parser.error("--item-vectors and --user-vectors go together")
    settings = load_settings()
    threads = args.threads or len(os.sched_getaffinity(0))
    k = 100
    results: dict[str, object] = {}
    for name in datasets:
        if name == "movielens" and args.item_vectors is not None:
            try:
                items = _load_vectors(args.item_vectors, "--item-vectors")
                users = _load_vectors(args.user_vectors, "--user-vectors")
            except ValueError as exc:
                parser.error(str(exc))
            if items.shape[1] != users.shape[1]:
                parser.error(f"item vectors have {items.shape[1]} dims, users {users.shape[1]}")
            source = f"{args.item_vectors} / {args.user_vectors}"
        elif name == "movielens":
            als = settings.als
            items, users = movielens_als_vectors(Path(settings.data_dir), als.factors,
                                                 als.regularization, als.alpha, als.iterations,
                                                 settings.seed)
            source = f"implicit ALS on MovieLens 100K, {als.factors} factors"
        else:
            items, users = structured_vectors(args.items, args.users, args.dim, settings.seed)
            source = "structured synthetic (clusters in a low-rank subspace + noise)"
        logger.info("%s: %d items, %d users, %d dims", name, *items.shape[:1], *users.shape)
        figures = compare(items, users, settings.index, args.queries, k, threads, settings.seed)
        results[name] = {"source": source, **figures}
        print(
            f"{name:>10}: {figures['items']} items x {figures['dim']} dims, "
            f"{figures['shards']} shards HNSW{figures['hnsw_m']} efSearch {figures['ef_search']}"
            f" | recall@{k} {figures['recall_at_100']:.4f} (target "
            f"{settings.index.recall_target}) | ANN {figures['ann_ms_per_query']:.3f} ms/query"
            f" vs exact {figures['exact_ms_per_query']:.3f} ms/query | build "
            f"{figures['build_s']:.1f} s, {threads} threads"
        )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
