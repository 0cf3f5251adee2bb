"""Settings: offline evaluation of a model version, the promotion gate, the MLflow registry.

Three sections, wired into :class:`~conf.settings.Settings` as ``offline_eval``, ``gate`` and
``mlflow``. Metric names are ``<name>@<k>`` with a name of
``evaluation.metrics.RANKING_METRICS`` (``ndcg@10``, ``recall@100``); the evaluation checks
the names, this module only their shape (``conf`` imports nothing of ours).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pydantic import Field, field_validator, model_validator

from conf.types import Fraction, NonNegFloat, NonNegInt, PositiveInt, Section

if TYPE_CHECKING:
    from conf.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The folder holding ``conf/``; relative paths in these sections start here."""


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``.

    Raises:
        ValueError: ``name`` does not look like ``<metric>@<positive int>``.
    """
    metric, _, k = name.partition("@")
    if not metric or not k.isdigit() or int(k) < 1:
        raise ValueError(f"a metric must look like 'ndcg@10', got {name!r}")
    return metric, int(k)


def _check_metrics(values: list[str]) -> list[str]:
    for value in values:
        parse_metric(value)
    return values


class OfflineEvalSettings(Section):
    """``recpipe evaluate``: the temporal holdout, its truth, cutoffs and slices.

    The holdout is the events of the last ``matrix.holdout_days`` days up to ``ds`` (the
    days the model did not train on, see ``algorithms/window.py``).
    """

    positive_event_types: list[str] = Field(
        default_factory=lambda: ["click", "add_to_cart", "purchase", "rating"])
    """Holdout events of these types make their item relevant for their user."""
    min_rating: float = 4.0
    """A ``rating`` event is positive only when its value is at least this."""
    ks: list[PositiveInt] = Field(
        default_factory=lambda: [1, 5, 10, 20, 50, 100, 200, 500, 1000])
    """Cutoffs at which every stage is scored (the recall@k curves); must hold the
    cutoffs of ``headline``. The largest is the list length read from each stage."""
    headline: list[str] = Field(default_factory=lambda: ["ndcg@10", "recall@100"])
    """The metrics shown first in reports and logged to the MLflow run's summary."""
    heavy_user_quantile: Fraction = 0.9
    """Heavy users: training items per user at or above this quantile over training users."""
    max_users: NonNegInt = 5000
    """Evaluate at most this many holdout users, drawn with the root ``seed`` (0: all).
    The evaluation runs on the driver: memory grows with users times ``max(ks)``."""
    report_dir: str = "var/reports"
    """Where ``recpipe report`` writes ``ds=<ds>/index.html`` when ``--out`` is not given;
    relative paths start at the project root."""

    @field_validator("headline")
    @classmethod
    def _headline_shape(cls, value: list[str]) -> list[str]:
        return _check_metrics(value)

    @model_validator(mode="after")
    def _headline_cutoffs_scored(self) -> OfflineEvalSettings:
        missing = sorted({parse_metric(m)[1] for m in self.headline} - set(self.ks))
        if missing:
            raise ValueError(f"headline cutoffs {missing} are not in ks {self.ks}")
        return self


class GateSettings(Section):
    """``recpipe gate``: when a candidate model version may replace the champion.

    The candidate passes when, on the same holdout, every metric of ``metrics`` is finite,
    at least ``(1 + popularity_margin)`` times the popularity baseline's and at least
    ``(1 - tolerance)`` times the champion's (when there is one), and its catalogue coverage
    at ``coverage_k`` is at least ``coverage_floor``.
    """

    metrics: list[str] = Field(default_factory=lambda: ["ndcg@10", "recall@100"])
    """Metrics compared with the baseline and the champion."""
    popularity_margin: NonNegFloat = 0.05
    """Relative margin over the popularity baseline each metric must reach (0.05: +5 %)."""
    tolerance: Fraction = 0.05
    """Largest relative drop from the champion allowed on each metric (0.05: -5 %)."""
    served_stage: str | None = "topn/home_feed"
    """The evaluated stage whose lists the popularity check judges: what the release
    serves (``recpipe evaluate`` scores it on the same holdout). ``None`` judges the
    embedding model alone. The champion check always compares embedding models, the one
    thing both versions can be scored on for today's holdout."""
    coverage_k: PositiveInt = 100
    """Cutoff of the catalogue coverage check."""
    coverage_floor: Fraction = 0.05
    """Smallest share of the model's items that must appear in some top-``coverage_k``
    list of the evaluated users."""

    @field_validator("metrics")
    @classmethod
    def _metrics_shape(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("the gate needs at least one metric")
        return _check_metrics(value)


class MlflowSettings(Section):
    """Where runs and registered models live (MLflow tracking and Model Registry)."""

    tracking_uri: str = "sqlite:///var/mlflow/mlflow.db"
    """Tracking and registry store. A ``sqlite:///`` URI with a relative path is taken from
    the project root; ``http(s)://`` points at a tracking server."""
    artifact_root: str = "var/mlflow/artifacts"
    """Artifact location of a newly created experiment: a folder (relative to the project
    root) or a URI (``s3://...``). Unused for an experiment that exists already."""
    experiment: str = "recpipe"
    """Experiment holding one evaluation run per model version."""
    embeddings_model: str = "recpipe-embeddings"
    """Registered name of the embedding model (vectors and id maps, a pyfunc)."""
    ranker_model: str = "recpipe-ranker"
    """Registered name of the ranker (registered by ``training/``)."""
    ui_url: str | None = None
    """Base URL of an MLflow UI (e.g. ``http://127.0.0.1:5000`` for ``mlflow ui``) used for
    run links in reports; without it the report shows run ids only."""

    def resolved_tracking_uri(self) -> str:
        """The tracking URI with a relative SQLite path made absolute."""
        prefix = "sqlite:///"
        if self.tracking_uri.startswith(prefix):
            path = Path(self.tracking_uri[len(prefix):]).expanduser()
            if not path.is_absolute():
                path = PROJECT_ROOT / path
            return f"{prefix}{path.resolve()}"
        return self.tracking_uri

    def resolved_artifact_root(self) -> str:
        """The artifact root as a URI (``file://`` for a local folder)."""
        if "://" in self.artifact_root:
            return self.artifact_root.rstrip("/")
        path = Path(self.artifact_root).expanduser()
        return (path if path.is_absolute() else PROJECT_ROOT / path).resolve().as_uri()

    @field_validator("experiment", "embeddings_model", "ranker_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class EvalSections(NamedTuple):
    """The three sections the evaluation entry points read, passed down together."""

    offline: OfflineEvalSettings
    gate: GateSettings
    mlflow: MlflowSettings


def eval_sections(settings: Settings) -> EvalSections:
    """The ``offline_eval``, ``gate`` and ``mlflow`` sections of the root settings."""
    return EvalSections(settings.offline_eval, settings.gate, settings.mlflow)
