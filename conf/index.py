"""Settings: FAISS index building (sharded HNSW), owned by serving_export/faiss."""

from __future__ import annotations

from pydantic import Field, field_validator

from conf.types import Fraction, NonNegInt, PositiveInt, Section


class IndexSettings(Section):
    """FAISS index building (sharded HNSW), owned by serving_export/faiss."""

    shards: NonNegInt = 4
    """Number of HNSW shards the item vectors are split into (contiguous ranges of rows);
    0: one shard per ``shard_items`` vectors. Each shard returns its own top k, so more
    shards also raise recall at a given ``efSearch``, at the cost of searching each: on
    100,000 structured synthetic vectors (``bench/ann.py``) one shard reached recall@100
    0.94 at best (``efSearch`` 2,048), four reached 0.98 at ``efSearch`` 128 (0.6 ms per
    query)."""
    shard_items: PositiveInt = 2_000_000
    """Most vectors per shard when ``shards`` is 0."""
    hnsw_m: PositiveInt = 32
    """HNSW graph degree ``M`` (links per node); more gives higher recall, bigger index."""
    ef_construction: PositiveInt = 200
    """``efConstruction``: breadth of the search while inserting; more is slower, better."""
    augment: bool = False
    """Add the coordinate ``sqrt(R^2 - |x|^2)`` to item vectors (and 0 to queries) so that the
    HNSW graph lives on one sphere. Off by default: on MovieLens ALS vectors and the structured
    synthetic catalogue plain inner-product HNSW reached recall@100 0.98 with 4-6x smaller
    ``efSearch``; it can help where plain recall stalls below the target."""
    recall_k: PositiveInt = 100
    """``k`` of the recall@k that tuning measures against exact inner-product search."""
    recall_target: Fraction = 0.98
    """Recall@``recall_k`` the tuned ``efSearch`` must reach on the sampled queries."""
    ef_search_candidates: list[PositiveInt] = Field(
        default_factory=lambda: [32, 64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
    )
    """``efSearch`` values tried in increasing order; the first meeting the target wins."""
    tune_queries: PositiveInt = 1000
    """Number of real query (user) vectors sampled, with ``seed``, to measure recall."""
    seed: int = 42
    """Seed for the query sample used in tuning."""
    threads: NonNegInt = 0
    """OpenMP threads FAISS may use (build and search); 0 keeps FAISS's default (all cores)."""
    mmap: bool = False
    """Open shards memory-mapped (``faiss.IO_FLAG_MMAP``) instead of reading them into RAM."""
    use_gpu: bool = False
    """Copy shards to the GPU for search when FAISS was built with CUDA (faiss-gpu)."""
    exact_block_rows: PositiveInt = 256
    """Query rows scored per block by the exact blocked top-k (``algorithms.topk``)."""

    def shard_count(self, items: int) -> int:
        """Shards for ``items`` vectors: ``shards``, or one per ``shard_items`` when 0."""
        return self.shards or max(1, -(-items // self.shard_items))

    @field_validator("ef_search_candidates")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("must not be empty")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be strictly increasing, got {value}")
        return value
