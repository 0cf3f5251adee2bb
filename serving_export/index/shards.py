"""Sharded inner-product HNSW indexes over item vectors (FAISS): search, save, load.

Shapes: N items, D dimensions, Q queries, k results, S shards.

The item vectors are split into S contiguous row ranges; each shard is an
``IndexHNSWFlat`` (inner product) whose local ids ``0..n_s-1`` map to external item ids
through the shard's int64 id map. A search asks every shard for its own top ``k`` and merges
them into the global top ``k`` (score descending, then external id ascending). Numpy in,
indexes and paths out (faiss contrib style): no Spark and no lake I/O here. Building and
tuning: :mod:`serving_export.index.build`.

Optionally (``augment``) every item vector ``x`` gets one more coordinate
``sqrt(R^2 - |x|^2)``, ``R`` the largest norm, and every query a 0 there (Bachrach et al.,
2014): all items then lie on one sphere, where the inner-product graph is a nearest-neighbour
graph, while ``<q', x'> = <q, x>`` keeps the scores exact. Plain inner-product graphs usually
need a smaller ``efSearch`` for the same recall (Morozov & Babenko, 2018, and this project's
``bench ann``), but their recall can stall when a weak graph leaves short vectors unlinked.

On disk an index is a directory written once: ``shard-000.faiss`` ... (FAISS's own format),
``shard-000.ids.npy`` ... (``allow_pickle=False``) and ``meta.json`` (parameters, the tuned
``efSearch`` and the recall :mod:`serving_export.index.tuning` measured for it). It is
written into a temporary sibling and renamed into place, so a reader never sees a
half-written index.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from algorithms.topk import as_vectors
from conf.errors import IndexCorrupt, IndexDirectoryNotEmpty

logger = logging.getLogger(__name__)

FORMAT = "recpipe-sharded-hnsw"
FORMAT_VERSION = 1
META_FILE = "meta.json"


@dataclass(frozen=True)
class Tuning:
    """Outcome of :func:`serving_export.index.tuning.tune_ef_search`: the chosen ``efSearch``
    and the recall it gave."""

    ef_search: int
    recall: float
    """Mean recall@``k`` of the sharded index against exact search on the sampled queries."""
    k: int
    queries: int
    """Number of query vectors the recall was measured on."""
    target: float
    measured: dict[int, float] = field(default_factory=dict)
    """Recall per ``efSearch`` tried, in order."""


@contextlib.contextmanager
def omp_threads(threads: int) -> Iterator[None]:
    """Let FAISS use ``threads`` OpenMP threads inside the block (0: leave as is)."""
    if threads <= 0:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def to_gpu(index: faiss.Index, what: str, keep: list[object]) -> faiss.Index:
    """Copy ``index`` to GPU 0 when FAISS has CUDA devices; else log and return it unchanged.

    The GPU resources are appended to ``keep``, which must live as long as the GPU index.
    """
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        logger.warning("use_gpu is set but FAISS sees no GPU; %s stays on the CPU", what)
        return index
    resources = faiss.StandardGpuResources()
    try:
        moved = faiss.index_cputo_gpu(resources, 0, index)
    except RuntimeError as exc:  # e.g. HNSW has no GPU implementation in stock faiss-gpu
        logger.warning("%s cannot move to the GPU (%s); it stays on the CPU", what, exc)
        return index
    keep.append(resources)  # the resources must outlive the GPU index
    return moved


class ShardedIndex:
    """S inner-product HNSW shards, each with its id map, searched as one index.

    Args:
        shards: the S FAISS indexes (CPU), all of dimension D.
        id_maps: S int64 arrays; ``id_maps[s][local]`` is the external id of shard s's row.
        hnsw_m: the shards' HNSW ``M``.
        ef_construction: the shards' ``efConstruction``.
        ef_search: default ``efSearch`` of :meth:`search`.
        tuning: how ``ef_search`` was chosen, if it was tuned.
        augmented: the shards hold vectors with the extra sphere coordinate (dimension D + 1).
        use_gpu: search on the GPU where FAISS can (falls back to the CPU with a warning).

    Raises:
        ValueError: shard and id-map counts or sizes differ, or dimensions disagree.
    """

    def __init__(
        self,
        shards: Sequence[faiss.Index],
        id_maps: Sequence[np.ndarray],
        hnsw_m: int,
        ef_construction: int,
        ef_search: int,
        tuning: Tuning | None = None,
        augmented: bool = False,
        use_gpu: bool = False,
    ) -> None:
        if not shards or len(shards) != len(id_maps):
            raise ValueError(f"need one id map per shard, got {len(shards)} shards and "
                             f"{len(id_maps)} id maps")
        dims = {shard.d for shard in shards}
        if len(dims) != 1:
            raise ValueError(f"shards have different dimensions {sorted(dims)}")
        for number, (shard, ids) in enumerate(zip(shards, id_maps, strict=True)):
            if shard.ntotal != len(ids):
                raise ValueError(f"shard {number} holds {shard.ntotal} vectors but its id map "
                                 f"{len(ids)} ids")
        self.shards = list(shards)
        self.id_maps = list(id_maps)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.tuning = tuning
        self.augmented = augmented
        self._merged: faiss.IndexShards | None = None
        self._offsets: np.ndarray | None = None
        self._gpu_resources: list[object] = []
        self._search_shards = (
            [to_gpu(s, f"shard {n}", self._gpu_resources) for n, s in enumerate(self.shards)]
            if use_gpu else self.shards
        )

    @property
    def dim(self) -> int:
        """D, the dimension of items and queries (without the sphere coordinate)."""
        return int(self.shards[0].d) - int(self.augmented)

    @property
    def ntotal(self) -> int:
        """N, the number of indexed items over all shards."""
        return sum(int(shard.ntotal) for shard in self.shards)

    def search(
        self, queries: np.ndarray, k: int, ef_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` items by inner product for each query.

        Args:
            queries: (Q, D) query vectors.
            k: results per query; slots beyond what the index returns hold id -1.
            ef_search: HNSW ``efSearch`` for this call; default ``self.ef_search``.

        Returns:
            ``(ids, scores)``: (Q, k) int64 external item ids and (Q, k) float32 inner
            products, best first (ties: lower id first); padding is id -1, score ``-inf``.

        Raises:
            ValueError: ``k`` < 1, ``ef_search`` < 1, or the queries' shape is wrong.
        """
        q = as_vectors(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have {q.shape[1]} dimensions, the index {self.dim}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        ef = self.ef_search if ef_search is None else ef_search
        if ef < 1:
            raise ValueError(f"ef_search must be >= 1, got {ef}")
        if self.augmented:
            q = np.hstack([q, np.zeros((q.shape[0], 1), dtype=np.float32)])
        params = faiss.SearchParametersHNSW(efSearch=ef)

        def one(number: int) -> tuple[np.ndarray, np.ndarray]:
            shard = self._search_shards[number]
            scores, local = shard.search(q, min(k, shard.ntotal), params=params)
            found = local >= 0
            return (np.where(found, np.asarray(self.id_maps[number])[np.maximum(local, 0)], -1),
                    np.where(found, scores, -np.inf).astype(np.float32))

        parts = [one(n) for n, shard in enumerate(self._search_shards) if shard.ntotal]
        ids = np.concatenate([p[0] for p in parts], axis=1)
        scores = np.concatenate([p[1] for p in parts], axis=1)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        # Best first, ties by external id; padding (-1, -inf) sorts last.
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=1)
        order = order[:, :k]
        return (np.take_along_axis(ids, order, axis=1),
                np.take_along_axis(scores, order, axis=1))

    def lookup(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-``k`` items of one query at the index's ``efSearch``, every shard searched
        at once on FAISS's own threads (``IndexShards``, merged in C++): what a service asks
        per request, without the Python loop and array merge of :meth:`search`.

        Returns:
            ``(ids, scores)``: (k',) int64 external ids and float32 scores, best first;
            ``k' <= k`` when the index holds fewer items.
        """
        q = as_vectors(query.reshape(1, -1), "query")
        if self.augmented:
            q = np.hstack([q, np.zeros((1, 1), dtype=np.float32)])
        if len(self.shards) == 1:  # no threads to hand the query to
            shard = self.shards[0]
            shard.hnsw.efSearch = self.ef_search
            scores, local = shard.search(q, min(k, self.ntotal))
            found = local[0] >= 0
            return np.asarray(self.id_maps[0])[local[0][found]], scores[0][found]
        if self._merged is None:
            merged = faiss.IndexShards(self.shards[0].d, True, True)  # threaded, successive
            for shard in self.shards:
                shard.hnsw.efSearch = self.ef_search
                merged.add_shard(shard)
            self._offsets = np.cumsum([0] + [int(s.ntotal) for s in self.shards])
            self._merged = merged
        scores, positions = self._merged.search(q, min(k, self.ntotal))
        found = positions[0] >= 0
        positions, scores = positions[0][found], scores[0][found]
        shard = np.searchsorted(self._offsets, positions, side="right") - 1
        local = positions - self._offsets[shard]
        ids = np.empty(len(positions), dtype=np.int64)
        for number in np.unique(shard).tolist():
            mine = shard == number
            ids[mine] = np.asarray(self.id_maps[number])[local[mine]]
        return ids, scores

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The indexed vectors and their external ids, shard by shard.

        Returns:
            ``(vectors, ids)``: (N, D) float32 read back from the shards' flat storage and
            (N,) int64 external ids.
        """
        parts = [shard.reconstruct_n(0, shard.ntotal) for shard in self.shards if shard.ntotal]
        vectors = np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)
        ids = np.concatenate([np.asarray(ids) for ids in self.id_maps])
        return np.ascontiguousarray(vectors[:, : self.dim]), ids

    def meta(self) -> dict[str, object]:
        """The JSON-able description written as ``meta.json``."""
        tuning = None
        if self.tuning is not None:
            tuning = asdict(self.tuning)
            tuning["measured"] = {str(ef): r for ef, r in self.tuning.measured.items()}
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "metric": "inner_product",
            "dim": self.dim, "count": self.ntotal, "partition": "contiguous",
            "augmented": self.augmented,
            "hnsw_m": self.hnsw_m, "ef_construction": self.ef_construction,
            "ef_search": self.ef_search, "tuning": tuning,
            "shards": [
                {"index": f"shard-{n:03d}.faiss", "ids": f"shard-{n:03d}.ids.npy",
                 "count": int(shard.ntotal)}
                for n, shard in enumerate(self.shards)
            ],
        }

    def save(self, directory: Path | str) -> Path:
        """Write the index into ``directory``, which must not exist or be empty.

        Returns:
            The directory written.

        Raises:
            IndexDirectoryNotEmpty: ``directory`` exists and holds something, or is a file.
        """
        target = Path(directory)
        _check_fresh(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            meta = self.meta()
            for entry, shard, ids in zip(meta["shards"], self.shards, self.id_maps, strict=True):
                faiss.write_index(shard, str(staging / entry["index"]))
                np.save(staging / entry["ids"], np.asarray(ids, dtype=np.int64),
                        allow_pickle=False)
            (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            try:
                os.rename(staging, target)  # atomic; replaces an empty directory
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise IndexDirectoryNotEmpty(f"{target} was filled while writing") from exc
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("wrote %d shards (%d items) to %s", len(self.shards), self.ntotal, target)
        return target

    @classmethod
    def load(
        cls, directory: Path | str, mmap: bool = False, use_gpu: bool = False
    ) -> ShardedIndex:
        """Open an index written by :meth:`save`.

        Args:
            directory: the index directory.
            mmap: map the shards' vectors and the id maps from disk instead of reading them.
            use_gpu: search on the GPU where FAISS can.

        Raises:
            IndexCorrupt: ``meta.json`` is missing or malformed, a file it names is missing,
                or a shard's size differs from its id map or the meta.
        """
        folder = Path(directory)
        meta = _read_meta(folder)
        flags = 0
        if mmap:  # IO_FLAG_MMAP_IFC maps the flat vector storage of IndexHNSWFlat
            flags = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) | faiss.IO_FLAG_READ_ONLY
        shards, id_maps = [], []
        for entry in meta["shards"]:
            index_path, ids_path = folder / entry["index"], folder / entry["ids"]
            for path in (index_path, ids_path):
                if not path.is_file():
                    raise IndexCorrupt(f"{folder}: {path.name} named in {META_FILE} is missing")
            shard = faiss.read_index(str(index_path), flags)
            ids = np.load(ids_path, allow_pickle=False, mmap_mode="r" if mmap else None)
            sizes = {int(shard.ntotal), len(ids), entry["count"]}
            if ids.dtype != np.int64 or ids.ndim != 1 or len(sizes) != 1:
                raise IndexCorrupt(f"{folder}: {entry['index']} holds {shard.ntotal} vectors, "
                                   f"{entry['ids']} {ids.shape} {ids.dtype}, meta {entry['count']}")
            shards.append(shard)
            id_maps.append(ids)
        tuning = meta.get("tuning")
        if tuning is not None:
            tuning = Tuning(**{**tuning, "measured": {
                int(ef): float(r) for ef, r in tuning["measured"].items()}})
        return cls(shards, id_maps, hnsw_m=meta["hnsw_m"],
                   ef_construction=meta["ef_construction"], ef_search=meta["ef_search"],
                   tuning=tuning, augmented=bool(meta.get("augmented", False)),
                   use_gpu=use_gpu)


def _check_fresh(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise IndexDirectoryNotEmpty(
            f"{target} exists and is not an empty directory; an index is written once, "
            f"into a fresh directory"
        )


def _read_meta(folder: Path) -> dict:
    path = folder / META_FILE
    if not path.is_file():
        raise IndexCorrupt(f"{folder}: no {META_FILE}; not a sharded index directory")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(f"{path} is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise IndexCorrupt(f"{path}: format {meta.get('format')!r} version "
                           f"{meta.get('version')!r}, expected {FORMAT!r} {FORMAT_VERSION}")
    missing = {"shards", "hnsw_m", "ef_construction", "ef_search"} - meta.keys()
    if missing:
        raise IndexCorrupt(f"{path} lacks {sorted(missing)}")
    return meta
