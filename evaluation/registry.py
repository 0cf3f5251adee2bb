"""MLflow helpers: the tracking store, evaluation runs, the embedding model, aliases.

Shapes: U users, I items, F factors, Q queried users, k items per list.

- :func:`tracking` points MLflow at ``settings.mlflow`` (SQLite store and local artifact root
  by default) for the duration of a ``with`` block and yields a client.
- :class:`EmbeddingModel` is the embedding model as an MLflow pyfunc: its artifacts are the
  vectors (``.npy``) and the id maps (Arrow IPC files); ``predict`` returns the top-k items of
  user ids. It is logged as "models from code" (a three-line script that imports this
  class), so nothing is pickled; loading it needs the ``recpipe`` code importable.
- Registered versions carry tags: the ``ds`` and model version they were built for, the
  Delta table versions they were trained on (``lake.<table>``), their evaluation run and,
  once gated, the verdict. Promotion moves the alias ``champion`` to the new version and
  ``previous`` to the old one (stages are deprecated in MLflow 3).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from conf.gate import MlflowSettings

from evaluation.embedding_model import (
    MODEL_SCRIPT,
    EmbeddingModel,
    pip_requirements,
    write_artifacts,
)

log = logging.getLogger(__name__)

CHAMPION = "champion"
"""Alias of the version that is live."""
PREVIOUS = "previous"
"""Alias of the version the current champion replaced (the rollback target)."""
TAG_DS = "recpipe.ds"
TAG_MODEL_VERSION = "recpipe.model_version"
TAG_STEP = "recpipe.step"
TAG_EVAL_RUN = "recpipe.eval_run_id"
TAG_GATE_PASSED = "recpipe.gate.passed"
TAG_GATE_REASONS = "recpipe.gate.reasons"
LAKE_TAG_PREFIX = "lake."
"""Tag ``lake.<table>`` = the Delta version of ``<table>`` the model was built from."""


# -- the tracking store ---------------------------------------------------------------------
@contextmanager
def tracking(cfg: MlflowSettings) -> Iterator[MlflowClient]:
    """Point MLflow's tracking and registry URIs at ``cfg`` inside the block.

    The folder of a local SQLite store is created. The previous URIs are restored on exit.

    Yields:
        A client bound to the store.
    """
    uri = cfg.resolved_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    old_tracking, old_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    finally:
        mlflow.set_tracking_uri(old_tracking)
        mlflow.set_registry_uri(old_registry)


def ensure_experiment(client: MlflowClient, cfg: MlflowSettings) -> str:
    """The id of experiment ``cfg.experiment``, created under the artifact root if missing."""
    found = client.get_experiment_by_name(cfg.experiment)
    if found is not None:
        return found.experiment_id
    location = f"{cfg.resolved_artifact_root()}/{cfg.experiment}"
    return client.create_experiment(cfg.experiment, artifact_location=location)


def evaluation_run(client: MlflowClient, experiment_id: str, ds: str, model_version: str) -> str:
    """The id of the evaluation run of ``model_version`` on ``ds``, started if none exists.

    One run per (ds, model version): a rerun of the same date logs into the same run.
    """
    query = (f"tags.`{TAG_STEP}` = 'evaluate' and tags.`{TAG_DS}` = '{ds}' "
             f"and tags.`{TAG_MODEL_VERSION}` = '{model_version}'")
    runs = client.search_runs([experiment_id], query, max_results=1,
                              order_by=["attributes.start_time ASC"])
    if runs:
        return runs[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"evaluate {model_version}", tags={
        TAG_STEP: "evaluate", TAG_DS: ds, TAG_MODEL_VERSION: model_version})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def log_values(client: MlflowClient, run_id: str, params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, float] | None = None,
               tags: Mapping[str, Any] | None = None) -> None:
    """Log params, metrics (NaN ones left out) and tags in batches of MLflow's size limits.

    A param already logged with another value is left as it was (MLflow params are
    write-once) and the difference is logged as a warning.
    """
    from mlflow.entities import Metric, Param, RunTag

    stamp = int(pd.Timestamp.now("UTC").timestamp() * 1000)
    logged = client.get_run(run_id).data.params
    new_params = []
    for key, value in (params or {}).items():
        text = str(value)[:6000]
        if key not in logged:
            new_params.append(Param(key, text))
        elif logged[key] != text:
            log.warning("run %s: param %s stays %r (new value %r)", run_id, key, logged[key], text)
    finite = [Metric(k, float(v), stamp, 0) for k, v in (metrics or {}).items()
              if v is not None and np.isfinite(v)]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for start in range(0, len(new_params), 100):
        client.log_batch(run_id, params=new_params[start:start + 100])
    for start in range(0, len(tag_list), 100):
        client.log_batch(run_id, tags=tag_list[start:start + 100])
    for start in range(0, len(finite), 1000):
        client.log_batch(run_id, metrics=finite[start:start + 1000])


def run_url(cfg: MlflowSettings, experiment_id: str, run_id: str) -> str | None:
    """Link to a run in the MLflow UI ``cfg.ui_url`` (``None`` without a UI address)."""
    if not cfg.ui_url:
        return None
    return f"{cfg.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def find_version(client: MlflowClient, name: str, ds: str) -> ModelVersion | None:
    """The registered version of ``name`` built for ``ds`` (the newest if several)."""
    try:
        found = client.search_model_versions(f"name = '{name}' and tags.`{TAG_DS}` = '{ds}'")
    except MlflowException:
        return None
    return max(found, key=lambda v: int(v.version)) if found else None


def register_embeddings(client: MlflowClient, run_id: str, name: str, model: EmbeddingModel,
                        ds: str, model_version: str,
                        lineage: Mapping[str, int | None]) -> ModelVersion:
    """Log ``model`` as a pyfunc under run ``run_id`` and register it as ``name``.

    Idempotent: a version of ``name`` already tagged with this ``ds`` and ``model_version``
    is returned as it is.

    Args:
        client: a client from :func:`tracking` (the global URIs point at its store).
        run_id: the evaluation run the model version is linked to.
        name: registered model name (``mlflow.embeddings_model``).
        model: the vectors and id maps.
        ds: logical date the model was built for.
        model_version: the pipeline's model version string (``als-<ds>-<hash>``).
        lineage: Delta table name -> version read (tagged ``lake.<table>``).

    Returns:
        The registered model version.
    """
    existing = find_version(client, name, ds)
    if existing is not None and existing.tags.get(TAG_MODEL_VERSION) == model_version:
        return existing
    from mlflow.models import infer_signature

    tags = {TAG_DS: ds, TAG_MODEL_VERSION: model_version, TAG_EVAL_RUN: run_id,
            **{f"{LAKE_TAG_PREFIX}{t}": str(v) for t, v in lineage.items() if v is not None}}
    example = pd.DataFrame({"user_id": [model.user_id_array[0].as_py()
                                        if len(model.user_id_array) else "u"]})
    output = pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "score": [0.0], "rank": [1]})
    with tempfile.TemporaryDirectory(prefix="recpipe-emb-") as tmp, \
            warnings.catch_warnings():
        # MLflow hints about integer columns and missing input examples: both deliberate
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, output, params={"k": 10})
        folder = Path(tmp)
        artifacts = write_artifacts(model, folder)
        script = folder / "embedding_model.py"
        script.write_text(MODEL_SCRIPT)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="embeddings", python_model=str(script), artifacts=artifacts,
                signature=signature, pip_requirements=pip_requirements(),
                tags={TAG_DS: ds, TAG_MODEL_VERSION: model_version})
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    log.info("registered %s version %s (%s, run %s)", name, version.version, model_version,
             run_id)
    return client.get_model_version(name, version.version)


def load_embeddings(name: str, version: str) -> EmbeddingModel:
    """Load version ``version`` of registered model ``name`` (inside :func:`tracking`)."""
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    model = loaded.unwrap_python_model()
    if not isinstance(model, EmbeddingModel):
        raise TypeError(f"models:/{name}/{version} is a {type(model).__name__}, "
                        "not an EmbeddingModel")
    return model


# -- aliases --------------------------------------------------------------------------------
def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version of ``name`` that ``alias`` points at, or ``None``."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Point ``champion`` at ``version`` and ``previous`` at the champion it replaces.

    ``previous`` moves first, so a crash between the two calls leaves the old champion
    live. Promoting the current champion again changes nothing.

    Returns:
        The replaced champion's version, or ``None`` when there was none (or it was
        ``version`` itself).
    """
    old = alias_version(client, name, CHAMPION)
    if old is not None and str(old.version) == str(version):
        return None
    if old is not None:
        client.set_registered_model_alias(name, PREVIOUS, old.version)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    log.info("%s: %s -> version %s (previous: %s)", name, CHAMPION, version,
             None if old is None else old.version)
    return None if old is None else str(old.version)
