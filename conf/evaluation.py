"""Settings: Offline evaluation, the promotion gate and the MLflow registry.

:class:`QualityBenchSettings` drives ``recpipe bench quality`` (the protocols in
``evaluation/protocols``): cutoffs, tuning grids searched on validation data only, and the
protocol parameters of the published benchmarks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.types import Fraction, NonNegInt, PositiveFloat, PositiveInt, Section


class IalsGrid(Section):
    """Hyper-parameter grid of the implicit ALS model; every combination is tried."""

    factors: list[PositiveInt] = Field(default_factory=lambda: [32, 64, 128, 256])
    """Embedding sizes F. Small data wants few factors."""
    regularization: list[PositiveFloat] = Field(
        default_factory=lambda: [
            0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0
        ]
    )
    """L2 penalties; implicit does not scale them by interaction counts, so the grid spans
    orders of magnitude (on ML-1M with 256 factors the best was at 100, the old grid's edge,
    so the grid goes on to 1000)."""
    alpha: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 3.0, 10.0, 30.0, 100.0])
    """Confidence scales: an interaction x weighs ``1 + alpha * x``."""
    iterations: PositiveInt = 15
    """ALS sweeps per fit."""


class EaseGrid(Section):
    """Hyper-parameter grid of EASE."""

    l2: list[PositiveFloat] = Field(
        default_factory=lambda: [
            10.0, 30.0, 100.0, 200.0, 300.0, 400.0, 500.0, 700.0, 1000.0, 1500.0, 2000.0, 5000.0
        ]
    )
    """L2 penalties lambda."""


class ItemKnnGrid(Section):
    """Hyper-parameter grid of the cosine ItemKNN model."""

    neighbors: list[PositiveInt] = Field(default_factory=lambda: [50, 100, 200, 400])
    """Neighbours kept per item."""
    shrink: list[float] = Field(default_factory=lambda: [0.0, 10.0, 100.0])
    """Shrink terms added to the cosine's denominator."""


class GraphFilterGrid(Section):
    """Hyper-parameter grid of the GF-CF graph filter (``algorithms.cf.graph_filter``)."""

    alpha: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.3, 1.0, 3.0])
    """Weights of the ideal low-pass term (0: the linear filter alone)."""
    rank: list[PositiveInt] = Field(default_factory=lambda: [32, 64, 128, 256, 512])
    """Singular vectors kept by the ideal filter (capped at min(users, items))."""
    norm: list[PositiveFloat] = Field(default_factory=lambda: [0.5])
    """Degree normalisation exponents (the paper's 1/2)."""
    dense_max_items: PositiveInt = 8000
    """Largest catalogue whose item-item filter is held dense (I x I float32)."""


class Rp3BetaGrid(Section):
    """Hyper-parameter grid of RP3beta (``algorithms.cf.rp3beta``)."""

    alpha: list[PositiveFloat] = Field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0, 1.5])
    """Exponents of the random walk's transition probabilities."""
    beta: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8])
    """Popularity penalty exponents of the destination item."""
    neighbors: list[PositiveInt] = Field(default_factory=lambda: [50, 100, 200, 400, 800])
    """Neighbours kept per item."""


class AdmmSlimGrid(Section):
    """Hyper-parameter grid of ADMM-SLIM (``algorithms.cf.slim``)."""

    l1: list[float] = Field(default_factory=lambda: [1.0, 3.0, 10.0])
    """L1 penalties (sparsity of the item-item weights)."""
    l2: list[PositiveFloat] = Field(default_factory=lambda: [100.0, 200.0, 500.0, 1000.0])
    """L2 penalties."""
    l2_exponent: list[float] = Field(default_factory=lambda: [0.0, 0.5])
    """Item i's L2 penalty is ``l2 * (users of i) ** l2_exponent`` (0: constant)."""
    rho: PositiveFloat = 4000.0
    """ADMM penalty (RecBole's default)."""
    iterations: PositiveInt = 50
    """Most ADMM iterations per fit (it stops earlier when the residuals are small)."""


class ModelGrids(Section):
    """One grid per tunable model."""

    ials: IalsGrid = Field(default_factory=IalsGrid)
    ease: EaseGrid = Field(default_factory=EaseGrid)
    itemknn: ItemKnnGrid = Field(default_factory=ItemKnnGrid)
    gfcf: GraphFilterGrid = Field(default_factory=GraphFilterGrid)
    rp3beta: Rp3BetaGrid = Field(default_factory=Rp3BetaGrid)
    admmslim: AdmmSlimGrid = Field(default_factory=AdmmSlimGrid)


def _quick_grids() -> ModelGrids:
    return ModelGrids(
        ials=IalsGrid(factors=[16], regularization=[0.1, 10.0], alpha=[10.0], iterations=5),
        ease=EaseGrid(l2=[50.0, 500.0]),
        itemknn=ItemKnnGrid(neighbors=[20], shrink=[0.0]),
        gfcf=GraphFilterGrid(alpha=[0.0, 0.3], rank=[16]),
        rp3beta=Rp3BetaGrid(alpha=[1.0], beta=[0.0, 0.5], neighbors=[50]),
        admmslim=AdmmSlimGrid(l1=[1.0], l2=[200.0], l2_exponent=[0.5], iterations=10),
    )


class QualityBenchSettings(Section):
    """``recpipe bench quality``: protocols, grids and cutoffs."""

    ks: list[PositiveInt] = Field(default_factory=lambda: [10, 20, 100])
    """Cutoffs at which test metrics are reported (the largest is the list length)."""
    tune_metric: str = "ndcg@10"
    """Validation metric that picks each model's hyper-parameters and the best model;
    ``<name>@<k>`` with a name of ``evaluation.metrics.RANKING_METRICS`` and k in ``ks``."""
    models: list[Literal["ials", "ease", "itemknn", "gfcf", "rp3beta", "admmslim"]] = Field(
        default_factory=lambda: ["ials", "ease", "gfcf", "rp3beta", "admmslim"]
    )
    """Tuned models; the most-popular baseline always runs besides them."""
    grids: ModelGrids = Field(default_factory=ModelGrids)
    """Grids of the full run."""
    search: dict[str, Literal["grid", "coordinate"]] = Field(
        default_factory=lambda: {"ials": "coordinate", "ease": "grid", "itemknn": "grid",
                                 "gfcf": "coordinate", "rp3beta": "coordinate",
                                 "admmslim": "coordinate"}
    )
    """How each model's grid is searched: ``grid`` tries every combination; ``coordinate``
    moves one axis at a time from the grid's middle until no single-axis move helps (far
    fewer fits for the 3-axis iALS grid; may stop at a local optimum)."""
    quick_grids: ModelGrids = Field(default_factory=_quick_grids)
    """Small grids used by ``--quick`` (CI)."""
    quick_users: PositiveInt = 300
    """``--quick`` keeps this many users, drawn with the run's seed."""
    block_users: PositiveInt = 2048
    """Users scored at once when ranking the full catalogue."""
    max_cubic_dim: dict[str, PositiveInt] = Field(
        default_factory=lambda: {"ease": 16000, "admmslim": 8000}
    )
    """Models whose fit costs the cube of a dimension (EASE: min(users, items), one inverse
    per penalty; ADMM-SLIM: items, one product per iteration) are skipped, with the reason
    in the result, above this size. Measured on 2 cores: a float32 Cholesky inverse runs
    at about 60 GFLOP/s, so 16,000 costs about a minute per fit and 30,000 about seven."""
    valid_max_users: NonNegInt = 10000
    """Tuning scores at most this many validation users, drawn with the run's seed (0: all).
    The test set is always scored in full."""
    num_threads: NonNegInt = 0
    """Worker threads of implicit's ALS (0: one per core)."""
    ml1m_dir: str = "../shared/data/ml-1m"
    """Folder of the binarized MovieLens 1M files; relative paths start at the repo root."""
    recbole_ratios: list[PositiveFloat] = Field(default_factory=lambda: [0.8, 0.1, 0.1])
    """recbole-ml1m: train/valid/test shares of each user's interactions (RecBole rounding:
    valid and test rounded down, train takes the rest)."""
    recbole_min_count: PositiveInt = 10
    """recbole-ml1m: k-core threshold applied to users and items until stable."""
    recbole_seed: int = 2020
    """recbole-ml1m: seed of the per-user shuffle (RecBole's default seed)."""
    msr_train_ratio: Fraction = 0.75
    """msr-ml100k: share of each user's ratings in train (the rest is test)."""
    msr_seed: int = 42
    """msr-ml100k: seed of the stratified split (the protocol's)."""
    msr_valid_ratio: Fraction = 0.75
    """msr-ml100k tuning: share of each user's TRAIN ratings kept for fitting; the rest is a
    validation set carved from train (the test set is never used to tune)."""

    @field_validator("tune_metric")
    @classmethod
    def _metric_shape(cls, value: str) -> str:
        name, _, k = value.partition("@")
        if not name or not k.isdigit():
            raise ValueError(f"tune_metric must look like 'ndcg@10', got {value!r}")
        return value

    @field_validator("recbole_ratios")
    @classmethod
    def _three_ratios(cls, value: list[float]) -> list[float]:
        if len(value) != 3:
            raise ValueError(f"recbole_ratios needs train, valid, test shares, got {value}")
        return value

    @model_validator(mode="after")
    def _tune_k_reported(self) -> QualityBenchSettings:
        k = int(self.tune_metric.partition("@")[2])
        if k not in self.ks:
            raise ValueError(f"tune_metric {self.tune_metric!r} needs k={k} in ks {self.ks}")
        return self


class EvaluationSettings(Section):
    """Offline evaluation, the promotion gate and the MLflow registry."""

    quality: QualityBenchSettings = Field(default_factory=QualityBenchSettings)
    """Quality benchmark protocols on public datasets (``recpipe bench quality``)."""
