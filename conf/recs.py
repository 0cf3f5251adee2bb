"""Settings of candidate generation and of the precomputed surfaces (business rules)."""

from __future__ import annotations

from pydantic import Field

from conf.types import Fraction, NonNegFloat, NonNegInt, PositiveInt, Section

STRATEGIES = ("ann", "content", "session", "popular")


class CandidateSettings(Section):
    """How many candidates each strategy contributes, and what is excluded."""

    per_user: PositiveInt = 1000
    """Upper bound on merged, deduplicated candidates per user."""
    per_strategy: dict[str, NonNegInt] = Field(
        default_factory=lambda: {"ann": 500, "content": 200, "session": 200, "popular": 100})
    """Candidates taken from each strategy before merging (0 turns a strategy off)."""
    blend_weights: dict[str, NonNegFloat] = Field(
        default_factory=lambda: {"ann": 1.0, "content": 0.3, "session": 0.5, "popular": 1.0})
    """Weights of each strategy's rank-normalised score in the retrieval blend that orders
    candidates (and scores them where no ranker is available)."""
    segment_weight: Fraction = 0.5
    """Weight of a user's segment popularity against overall popularity in the popular
    strategy (1 = the segment's own list only)."""
    history_items: PositiveInt = 10
    """The user's last N interactions seed session and content retrieval."""
    exclude_event_types: list[str] = Field(default_factory=lambda: ["purchase", "rating"])
    """Items the user has an event of these types with are never candidates (bought, or
    already rated/consumed)."""
    exact_max_items: PositiveInt = 200_000
    """Catalogues up to this size are searched exactly (blocked matmul); larger ones go
    through the sharded HNSW index."""
    user_block: PositiveInt = 2048
    """Users per block in the per-partition candidate function."""


class SimilarSettings(Section):
    """Similar items: every item's nearest items by cosine of item vectors (collaborative,
    or content-predicted for cold items) plus weighted co-visitation."""

    k: int = Field(50, ge=1, le=1000)
    """Similar items kept per item (the release holds them as memory-mapped arrays)."""
    covis_weight: NonNegFloat = 0.5
    """Weight of the co-visitation score next to the cosine."""
    exact_max_items: PositiveInt = 200_000
    """Catalogues up to this size compare every pair of items exactly (blocked matrix
    products, time quadratic in items, memory bounded); larger ones search an HNSW index
    over the unit vectors (time about ``N log N``)."""
    threads: NonNegInt = 0
    """Threads of the exact search or index build (0: every CPU this process may use)."""


class SurfaceSettings(Section):
    """Business rules of one precomputed surface."""

    n: PositiveInt = 100
    """Items stored per user."""
    drop_unavailable: bool = True
    drop_purchased: bool = True
    apply_boost: bool = True
    """Multiply scores by ``silver/items.boost`` (promotions)."""
    max_per_category: NonNegInt = 0
    """At most this many items sharing a first category in the top ``diversity_window``
    (0 = no cap)."""
    diversity_window: PositiveInt = 20
    exploration_share: Fraction = 0.0
    """Share of the top ``diversity_window`` slots given to epsilon-greedy picks from the
    rest of the candidates (seeded per user and date), marked ``exploration``."""
    exclude_from: str | None = None
    """Another surface whose first ``exclude_first`` items this surface must not repeat."""
    exclude_first: NonNegInt = 0


def default_surfaces() -> dict[str, SurfaceSettings]:
    return {
        "home_feed": SurfaceSettings(n=100, max_per_category=4, exploration_share=0.1),
        "email": SurfaceSettings(n=20, max_per_category=3, exclude_from="home_feed",
                                 exclude_first=10),
    }
