"""Settings of the data jobs: ingest, training matrix, embeddings, retrieval, top-N."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from conf.types import Fraction, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Section

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "skip")


class IngestSettings(Section):
    """Validation bounds for incoming events."""

    min_ts: str = "1990-01-01T00:00:00Z"
    """Earliest plausible event time (ISO-8601); older events are quarantined."""
    max_future_days: NonNegInt = 1
    """Events later than the end of ``ds`` plus this many days are quarantined."""
    rating_min: float = 0.5
    """Lowest valid rating value."""
    rating_max: float = 5.0
    """Highest valid rating value."""
    max_dwell_s: PositiveFloat = 86400.0
    """Longest valid dwell time in seconds for view events."""
    max_quarantine_share: Fraction = 0.05
    """The check after ingest fails the run if more than this share of a day's raw events
    was quarantined (a broken upstream feed should stop the night, not train on scraps)."""


class MatrixSettings(Section):
    """How events become a (user, item, confidence) training matrix."""

    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 0.5, "click": 1.0, "add_to_cart": 3.0,
            "purchase": 5.0, "rating": 1.0, "skip": -1.0,
        }
    )
    """Base weight per event type (negative weights push confidence down)."""
    rating_center: float = 2.5
    """A rating contributes ``(value - rating_center)`` times its weight; low ratings count
    as negative evidence."""
    dwell_weight: NonNegFloat = 0.01
    """Extra weight per second of dwell on a view, capped by ``dwell_cap_s``."""
    dwell_cap_s: PositiveFloat = 300.0
    """Dwell seconds beyond this add nothing."""
    half_life_days: PositiveFloat = 90.0
    """Recency decay: an event this many days before ``ds`` counts half."""
    lookback_days: PositiveInt = 36500
    """Only events within this many days before ``ds`` (inclusive) are used."""
    min_confidence: NonNegFloat = 0.0
    """Pairs whose summed confidence is at or below this are left out of the matrix."""


class AlsSettings(Section):
    """Collaborative-filtering embeddings."""

    backend: Literal["implicit", "spark"] = "implicit"
    """``implicit`` (single node, fast) or ``spark`` (MLlib, distributed)."""
    factors: PositiveInt = 128
    iterations: PositiveInt = 15
    regularization: PositiveFloat = 0.05
    alpha: PositiveFloat = 10.0
    """Confidence scale: the model sees ``1 + alpha * confidence``."""
    use_gpu: bool = False
    """Use CUDA for ``implicit`` when present."""


