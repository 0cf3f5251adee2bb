"""The root settings object."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.evaluation import EvaluationSettings
from conf.events import EventStreamSettings
from conf.experiments import ExperimentSettings
from conf.gate import GateSettings, MlflowSettings, OfflineEvalSettings
from conf.index import IndexSettings
from conf.pipeline import AlsSettings, IngestSettings, MatrixSettings
from conf.preswap import PreswapSettings
from conf.ranker import RankerSettings
from conf.recs import CandidateSettings, SimilarSettings, SurfaceSettings, default_surfaces
from conf.retrieval import ContentSettings, CovisitationSettings, PopularitySettings
from conf.serving import ServingSettings
from conf.types import PositiveInt, Section

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SparkSettings(Section):
    """How jobs get a Spark session."""

    master: str = "local[*]"
    """Spark master URL (``local[*]``, ``yarn``, ``k8s://...``, ``spark://...``)."""
    app_name: str = "recpipe"
    shuffle_partitions: PositiveInt = 8
    """``spark.sql.shuffle.partitions``; small on one machine, larger on a cluster."""
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)
    """Any further Spark conf, passed through verbatim."""


class LakeSettings(Section):
    """Where tables live and how they are written."""

    engine: Literal["deltalake", "delta-spark"] = "deltalake"
    """``deltalake`` (delta-rs, default) or ``delta-spark`` (needs the Delta jars)."""
    storage_options: dict[str, str] = Field(default_factory=dict)
    """Object-store credentials/options passed to delta-rs (S3/GCS/ABFS)."""


class Settings(Section):
    """Everything a recpipe entry point needs, loaded once and passed down."""

    env: str = "local"
    """Profile the settings came from (``local``, ``cluster``, ...)."""
    lake_root: str
    """Root of the Delta lake: a local folder or an object-store URI."""
    data_dir: str = "var/data"
    """Cache of downloaded datasets and converted inputs."""
    dataset: str = ""
    """A public dataset the nightly DAG fetches into ``landing`` first (``movielens-100k``);
    empty in production."""
    landing: str = "var/landing"
    """Folder where new event files and catalogue snapshots arrive for ingest."""
    runs_dir: str = "var/runs"
    work_dir: str = "var/work"
    """Scratch space of running jobs (Spark checkpoints), emptied by the job that wrote it.
    On a cluster it must be shared storage that every executor reaches (``s3a://``,
    ``hdfs://``), never the driver's local disk."""
    """Where every command's start/end records go (read by ``recpipe status``)."""
    seed: int = 42
    """Seed for every random choice in the pipeline."""
    spark: SparkSettings = Field(default_factory=SparkSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    matrix: MatrixSettings = Field(default_factory=MatrixSettings)
    als: AlsSettings = Field(default_factory=AlsSettings)
    popularity: PopularitySettings = Field(default_factory=PopularitySettings)
    covisitation: CovisitationSettings = Field(default_factory=CovisitationSettings)
    content: ContentSettings = Field(default_factory=ContentSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    candidates: CandidateSettings = Field(default_factory=CandidateSettings)
    similar: SimilarSettings = Field(default_factory=SimilarSettings)
    surfaces: dict[str, SurfaceSettings] = Field(default_factory=default_surfaces)
    """Business rules per precomputed surface (``home_feed``, ``email``)."""
    ranker: RankerSettings = Field(default_factory=RankerSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    offline_eval: OfflineEvalSettings = Field(default_factory=OfflineEvalSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    preswap: PreswapSettings = Field(default_factory=PreswapSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    events: EventStreamSettings = Field(default_factory=EventStreamSettings)
    experiments: list[ExperimentSettings] = Field(default_factory=list)
    """Online experiments (``recpipe experiment report --name X``)."""

    @model_validator(mode="before")
    @classmethod
    def _absolute_service_paths(cls, data: object) -> object:
        """The service's folders are taken from the project root when relative, like
        ``lake_root``, so the service finds the releases whatever its working directory."""
        if not isinstance(data, dict):
            return data
        for section, keys in (("serving", ("releases_root", "spool_dir")),
                              ("events", ("fallback_dir",))):
            if not isinstance(data.get(section, {}), dict):
                continue
            values = dict(data.get(section, {}))
            if section == "events":
                values.setdefault("fallback_dir", EventStreamSettings().fallback_dir)
            for key in keys:
                value = values.get(key)
                if isinstance(value, str) and "://" not in value and value.strip():
                    path = Path(value).expanduser()
                    values[key] = str(path if path.is_absolute() else PROJECT_ROOT / path)
            data = {**data, section: values}
        return data

    @field_validator("lake_root", "data_dir", "work_dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def resolve(self, path: str) -> str:
        """A configured path made absolute: URIs unchanged, relative folders taken from the
        project root (the folder holding ``conf/``), never from the current directory."""
        if "://" in path:
            return path.rstrip("/")
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else (PROJECT_ROOT / p).resolve())

    def lake_path(self, *parts: str) -> str:
        """Join ``parts`` under ``lake_root`` (works for local folders and URIs)."""
        return "/".join([self.resolve(self.lake_root), *parts])

    def data_path(self, *parts: str) -> Path:
        """A local path under ``data_dir``."""
        return Path(self.resolve(self.data_dir), *parts)
