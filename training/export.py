"""Export a trained ranker (once, into a temporary sibling, then renamed) and log it to
MLflow. The directory's layout and its reading side are in :mod:`algorithms.ranker.artifact`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from algorithms.ranker.artifact import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    sha256_file,
)
from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.model import ModelConfig, RankerModel
from conf.errors import UsageError
from training.sharded import full_state_dict

log = logging.getLogger(__name__)

def _versions() -> dict[str, str]:
    import torchrec

    return {"torch": torch.__version__, "torchrec": getattr(torchrec, "__version__", "?")}


def export_ranker(
    model: nn.Module,
    config: ModelConfig,
    encoder: FeatureEncoder,
    out_dir: Path,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a self-contained export of a trained model.

    Args:
        model: the trained :class:`RankerModel` (or its DMP wrapper; sharded tables are
            gathered, so call on every rank and keep rank 0's export).
        config: the model's config.
        encoder: the fitted encoder the model was trained with.
        out_dir: the export directory; must not exist yet.
        metrics: figures to record in the manifest (e.g. validation AUC).
        params: parameters to record (e.g. the settings used).

    Returns:
        The manifest (also written to ``manifest.json``).

    Raises:
        FileExistsError: ``out_dir`` exists.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UsageError(f"export directory already exists: {out_dir}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = full_state_dict(model)
        clean = RankerModel(config)
        clean.load_state_dict(state)
        clean.eval()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TorchScript will treat type annotations")
            torch.jit.script(clean).save(str(tmp / MODEL_FILE))
        torch.save(clean.state_dict(), tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(config.to_json())
        encoder.save(tmp)
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": config.architecture,
            "inputs": {
                "sparse": encoder.spec.sparse_names,
                "multi_hot": [f.name for f in encoder.spec.sparse if f.multi_hot],
                "dense": encoder.spec.dense_names,
                "label": encoder.spec.label,
                "weight": encoder.spec.weight,
            },
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "params": {k: v if isinstance(v, (int, float, bool)) else str(v)
                       for k, v in (params or {}).items()},
            "versions": _versions(),
            "files": [
                {"path": p.relative_to(tmp).as_posix(), "bytes": p.stat().st_size,
                 "sha256": sha256_file(p)}
                for p in files
            ],
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported the ranker to %s (%d files)", out_dir, len(manifest["files"]) + 1)
    return manifest


def log_to_mlflow(
    run: Any, export_dir: Path, metrics: Mapping[str, float], params: Mapping[str, Any]
) -> None:
    """Log metrics, parameters and the export directory (as artifacts under ``ranker/``).

    Args:
        run: an ``mlflow.entities.Run`` (e.g. from ``mlflow.start_run()``); the current
            tracking URI is used.
        export_dir: what :func:`export_ranker` wrote.
        metrics: name -> value.
        params: name -> value (stringified by MLflow).
    """
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    run_id = run.info.run_id
    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)) for k, v in params.items()],
    )
    client.log_artifacts(run_id, str(export_dir), artifact_path="ranker")
