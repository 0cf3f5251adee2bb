"""Settings of the data jobs: ingest, training matrix, embeddings, retrieval, top-N."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from conf.types import Fraction, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Section

NEGATIVE_FEEDBACK = ("hide", "not_interested", "dislike")
"""Event types by which a user says no to an item: suppressed at once in the service, kept
in the release's per-user block list (never shown to that user again), a veto on the
(user, item) pair in the training matrix, and a negative label for the ranker."""
EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rating", "skip", *NEGATIVE_FEEDBACK)


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
            "hide": -5.0, "not_interested": -5.0, "dislike": -5.0,
        }
    )
    """Base weight per event type (negative weights push confidence down). A pair with any
    negative feedback (``hide``, ``not_interested``, ``dislike``) is left out of the matrix
    whatever its sum: the user said no to that item."""
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
    """Only events within this many days before the training cutoff (inclusive) are used."""
    holdout_days: NonNegInt = 1
    """The last N days up to ``ds`` are held out of training and used to evaluate the model
    (see ``algorithms/window.py``); 0 trains on everything and skips offline evaluation."""
    min_confidence: NonNegFloat = 0.0
    """Pairs whose summed confidence is at or below this are left out of the matrix."""


class AlsSettings(Section):
    """Collaborative-filtering embeddings (``recpipe embeddings``): implicit-feedback ALS.

    Both backends fit the same model (Hu, Koren, Volinsky 2008): a stored confidence x counts
    as preference 1 with weight ``1 + alpha * x``, unobserved pairs as preference 0 with
    weight 1. They differ in one convention: Spark MLlib multiplies the L2 penalty by each
    user's (item's) number of interactions, ``implicit`` does not (see ``spark_reg_param``).
    """

    backend: Literal["implicit", "spark"] = "implicit"
    """``implicit`` (single node, fast) or ``spark`` (MLlib, distributed)."""
    factors: PositiveInt = 128
    """Embedding size F (``rank`` in MLlib): the length of every stored vector."""
    iterations: PositiveInt = 15
    """ALS sweeps (``maxIter`` in MLlib); each solves all users, then all items."""
    regularization: PositiveFloat = 0.05
    """L2 penalty. ``implicit`` adds it as is; for Spark see ``spark_reg_param``."""
    alpha: PositiveFloat = 10.0
    """Confidence scale: the model sees ``1 + alpha * confidence``."""
    seed: int | None = None
    """Seed of the random initial factors; None uses the root ``seed``. Same seed, input and
    settings give the same vectors (bit for bit with ``implicit`` on CPU)."""
    num_threads: NonNegInt = 0
    """``implicit`` worker threads (0: one per core). BLAS is held at one thread during fits.
    Does not change the result."""
    use_gpu: bool = False
    """Fit ``implicit`` on CUDA when present (needs a CUDA build of implicit); without CUDA
    the CPU solver is used and a warning logged."""
    spark_reg_param: PositiveFloat | None = None
    """MLlib's ``regParam``; None uses ``regularization``. MLlib scales it by each row's
    interaction count, so the same number regularizes far more strongly than ``implicit``."""
    spark_blocks: PositiveInt = 10
    """MLlib's ``numUserBlocks`` and ``numItemBlocks`` (partitions of each factor matrix);
    about the cores of the cluster. Part of the model: other blocks, other random start."""
    spark_checkpoint_dir: str | None = None
    """Folder (or URI) under which MLlib checkpoints the factors of a fit, cutting the RDD
    lineage that otherwise grows by one step per iteration until a task's serialized form
    overflows the JVM thread stack (``StackOverflowError``). None: ``<work_dir>/checkpoints``.
    Every fit uses a fresh subfolder and removes it once the vectors are computed. With a
    non-local Spark master it must be shared storage (a URI such as ``s3a://``)."""
    spark_checkpoint_interval: PositiveInt = 5
    """Checkpoint the factors every this many iterations. Measured on the local profile:
    without checkpoints MLlib's implicit ALS overflowed the default 1 MiB task-thread stack
    from 11 iterations on (``bench/als_lineage.py``); 5 keeps the lineage at half of that."""
