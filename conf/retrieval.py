"""Settings of the retrieval tables: popularity, co-visitation and item content vectors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.types import Fraction, NonNegFloat, PositiveFloat, PositiveInt, Section

ContentFeature = Literal["categories", "title", "attributes", "numeric"]


class SegmentRule(Section):
    """How one user attribute becomes part of a segment key.

    With ``bins`` the attribute is read as a number and bucketed into ranges; with ``values``
    only the listed values are kept and any other value becomes ``other``; with neither the
    value is used as it is (stripped). A missing or unreadable value is ``unknown``.
    """

    attribute: str
    """Key in the user's ``attributes`` map (e.g. ``age``, ``gender``, ``country``)."""
    bins: list[float] | None = None
    """Strictly increasing edges ``e0 < ... < en``: buckets ``< e0``, ``[e0, e1)``, ...,
    ``>= en``. Integer edges are labelled like ``18-24``, ``<18``, ``55+``."""
    labels: list[str] | None = None
    """Optional labels for the ``len(bins) + 1`` buckets, replacing the generated ones."""
    values: list[str] | None = None
    """Categorical attributes: the values kept as their own bucket; others are ``other``."""

    @field_validator("attribute")
    @classmethod
    def _attribute_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("attribute must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> SegmentRule:
        if self.bins is not None and self.values is not None:
            raise ValueError(f"segment rule {self.attribute!r}: give bins or values, not both")
        if self.bins is not None:
            if not self.bins:
                raise ValueError(f"segment rule {self.attribute!r}: bins must not be empty")
            if any(b >= a for a, b in zip(self.bins[1:], self.bins[:-1], strict=True)):
                raise ValueError(f"segment rule {self.attribute!r}: bins must be strictly "
                                 f"increasing, got {self.bins}")
        if self.labels is not None:
            if self.bins is None:
                raise ValueError(f"segment rule {self.attribute!r}: labels need bins")
            if len(self.labels) != len(self.bins) + 1:
                raise ValueError(f"segment rule {self.attribute!r}: {len(self.bins)} bins "
                                 f"need {len(self.bins) + 1} labels, got {len(self.labels)}")
        return self


def _default_segments() -> list[SegmentRule]:
    return [SegmentRule(attribute="age", bins=[18, 25, 35, 45, 55]),
            SegmentRule(attribute="gender")]


class PopularitySettings(Section):
    """Time-decayed popularity, overall (segment ``all``) and per user segment."""

    half_life_days: PositiveFloat = 7.0
    """An event this many days before the end of ``ds`` counts half."""
    window_days: PositiveInt = 90
    """Only events within this many days up to ``ds`` (inclusive) count."""
    event_weights: dict[str, NonNegFloat] = Field(
        default_factory=lambda: {
            "view": 1.0, "click": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "rating": 1.0,
            "skip": 0.0,
        }
    )
    """Weight of one event per type; types not listed (or weight 0) do not count."""
    user_item_cap: PositiveFloat = 5.0
    """Most decayed weight one user adds to one item (one heavy user cannot make an item
    popular alone)."""
    segments: list[SegmentRule] = Field(default_factory=_default_segments)
    """Segment = the combination of these attributes' buckets, keyed like
    ``age=25-34|gender=F``. Empty: only the overall list ``all``."""
    min_segment_users: PositiveInt = 20
    """Segments with fewer distinct active users are not written (callers fall back to
    ``all``)."""
    top_k: PositiveInt = 500
    """Items stored per segment."""

    @field_validator("segments")
    @classmethod
    def _unique_attributes(cls, rules: list[SegmentRule]) -> list[SegmentRule]:
        names = [r.attribute for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"segment attributes must be distinct, got {names}")
        return rules


class CovisitationSettings(Section):
    """Items that co-occur within a user's session."""

    session_gap_minutes: PositiveFloat = 30.0
    """A gap longer than this between a user's consecutive events starts a new session."""
    window_size: PositiveInt = 10
    """Two items of a session are paired when at most this many positions apart (positions
    of distinct items, by first occurrence): a session of n items gives at most
    ``n * window_size`` pairs, never ``n ** 2``."""
    max_session_items: PositiveInt = 200
    """Only the first this many distinct items of a session are used (bots, long binges)."""
    window_days: PositiveInt = 90
    """Only events within this many days up to ``ds`` (inclusive) count."""
    event_types: list[str] = Field(
        default_factory=lambda: ["view", "click", "add_to_cart", "purchase", "rating"])
    """Event types that put an item into a session (``skip`` is left out by default)."""
    min_co_count: PositiveInt = 2
    """Pairs seen together in fewer sessions are dropped."""
    normalisation: Literal["cosine", "conditional"] = "cosine"
    """``cosine``: ``co_count / sqrt(sessions_i * sessions_j)`` (symmetric);
    ``conditional``: ``co_count / sessions_i``, the share of item i's sessions that also hold
    the neighbour."""
    top_k: PositiveInt = 50
    """Neighbours stored per item."""

    @field_validator("event_types")
    @classmethod
    def _some_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("event_types must name at least one event type")
        return value


class ContentSettings(Section):
    """Item content vectors mapped into the collaborative (ALS) embedding space."""

    features: list[ContentFeature] = Field(
        default_factory=lambda: ["categories", "title", "attributes", "numeric"])
    """Feature blocks used: category multi-hot, hashed title words, hashed categorical
    attributes (``key=value``), bucketed numeric attributes."""
    block_weights: dict[ContentFeature, NonNegFloat] = Field(
        default_factory=lambda: {"categories": 1.0, "title": 0.5, "attributes": 0.5,
                                 "numeric": 1.0})
    """Each block is TF-IDF weighted, L2-normalised and scaled by ``sqrt(weight)``."""
    title_hash_dim: PositiveInt = 1024
    """Buckets of the signed hashing of title words."""
    attribute_hash_dim: PositiveInt = 256
    """Buckets of the signed hashing of ``key=value`` attribute tokens."""
    categorical_attributes: list[str] = Field(default_factory=lambda: ["brand"])
    """Item attributes hashed as categorical tokens."""
    numeric_bins: dict[str, list[float]] = Field(
        default_factory=lambda: {
            "release_year": [1930, 1940, 1950, 1960, 1970, 1980, 1985, 1990, 1993, 1995,
                             1996, 1997, 1998],
            "price": [5, 10, 20, 50, 100, 200],
        })
    """Numeric item attributes and their bucket edges (one-hot bucket; missing: no bit)."""
    min_df: PositiveInt = 2
    """Categories held by fewer items are left out of the vocabulary."""
    ridge_lambda: PositiveFloat = 3.0
    """L2 penalty of the ridge regression from content features to ALS item vectors (the
    intercept is not penalised)."""
    holdout_fraction: Fraction = 0.1
    """Share of items with ALS vectors held out to measure the mapping before the final fit on
    all of them (0 disables the measurement)."""
    retrieval_dim: PositiveInt | None = 128
    """Width of the content vectors that candidates, the ranker's features and the hourly run
    compare (``gold/item_context.content``): the raw features' top singular directions
    (seeded randomized SVD, :mod:`algorithms.projection`), so content retrieval costs as much
    per item as CF retrieval; None compares the raw features (one float per feature)."""
    store_content_vector: bool = True
    """Write the raw normalised content features (dense, one float per feature) too; turn
    off for very large catalogues. The CF-space ``vector`` takes its dimension from
    ``gold/item_embeddings`` (no setting, so it cannot disagree with the ALS model)."""

    @field_validator("holdout_fraction")
    @classmethod
    def _below_one(cls, value: float) -> float:
        if value >= 1.0:
            raise ValueError(f"holdout_fraction must be below 1, got {value}")
        return value

    @field_validator("numeric_bins")
    @classmethod
    def _increasing(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in value.items():
            if not edges or any(b >= a for a, b in zip(edges[1:], edges[:-1], strict=True)):
                raise ValueError(f"numeric_bins[{name!r}] must be non-empty and strictly "
                                 f"increasing, got {edges}")
        return value


__all__ = ["ContentSettings", "CovisitationSettings", "PopularitySettings", "SegmentRule"]
