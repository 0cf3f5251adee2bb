"""Export and reload a trained ranker; score tables with it.

An export directory holds, written once (into a temporary sibling, then renamed):

- ``model.ts``: the network as TorchScript (``torch.jit.script``; inputs
  ``(dense (B, F_dense) float32, sparse KeyedJaggedTensor)``, output logits (B,)).
- ``weights.pt``: the same weights as a plain state dict, for
  ``torch.load(weights_only=True)`` and a rebuild from ``model_config.json``.
- ``model_config.json``: :class:`~training.model.ModelConfig`.
- ``feature_spec.json``, ``dense_stats.json``, ``id_maps/<feature>.arrow``: the encoder.
- ``manifest.json``: format version, architecture, input columns, metrics, parameters,
  library versions, and every file with its size and SHA-256.

Nothing is unpickled on load: TorchScript archives and ``weights_only`` state dicts only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from conf.errors import ArtifactError, UsageError
from training.encoder import FeatureEncoder
from training.model import ModelConfig, RankerModel
from training.scoring import score
from training.sharded import full_state_dict

log = logging.getLogger(__name__)

FORMAT = "recpipe-ranker"
FORMAT_VERSION = 1
MODEL_FILE = "model.ts"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "model_config.json"
MANIFEST_FILE = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
                 "sha256": _sha256(p)}
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


@dataclass
class Ranker:
    """A loaded export: the network, its encoder, config and manifest."""

    model: nn.Module
    encoder: FeatureEncoder
    config: ModelConfig
    manifest: dict[str, Any]

    def score_table(
        self,
        data: pa.Table | pa.RecordBatch,
        batch_size: int = 8192,
        device: torch.device | str = "cpu",
    ) -> np.ndarray:
        """Probabilities for every row of ``data`` (feature columns; no label needed).

        Args:
            data: N rows with the spec's feature columns.
            batch_size: rows encoded and scored at a time.
            device: where to run.

        Returns:
            float32 (N,) probabilities, in row order.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        out = [
            score(self.model, self.encoder.encode(data.slice(start, batch_size), False), device)
            for start in range(0, data.num_rows, batch_size)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def read_manifest(directory: Path, verify: bool = True) -> dict[str, Any]:
    """Read and check ``manifest.json``; with ``verify`` also every file's size and SHA-256.

    Raises:
        ArtifactError: the manifest is missing, of another format or version, or a file
            is missing or altered.
    """
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {directory / MANIFEST_FILE}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{directory} holds format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}, expected {FORMAT!r} {FORMAT_VERSION}"
        )
    if verify:
        for entry in manifest["files"]:
            path = directory / entry["path"]
            if not path.is_file():
                raise ArtifactError(f"export file missing: {path}")
            if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
                raise ArtifactError(f"export file altered (size or checksum differs): {path}")
    return manifest


def load_ranker(
    directory: Path,
    kind: Literal["torchscript", "state_dict"] = "torchscript",
    verify: bool = True,
) -> Ranker:
    """Load an export without unpickling arbitrary objects.

    Args:
        directory: what :func:`export_ranker` wrote.
        kind: ``torchscript`` (``torch.jit.load`` of ``model.ts``) or ``state_dict``
            (rebuild :class:`RankerModel` from the config, ``torch.load(weights_only=True)``).
        verify: check file sizes and checksums against the manifest first.

    Raises:
        ArtifactError: the export is incomplete, altered or of another format.
        ValueError: ``kind`` is neither of the two.
    """
    directory = Path(directory)
    manifest = read_manifest(directory, verify)
    config = ModelConfig.from_json((directory / CONFIG_FILE).read_text())
    encoder = FeatureEncoder.load(directory)
    if kind == "torchscript":
        model: nn.Module = torch.jit.load(str(directory / MODEL_FILE), map_location="cpu")
    elif kind == "state_dict":
        model = RankerModel(config)
        model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
    else:
        raise ValueError(f"kind must be 'torchscript' or 'state_dict', got {kind!r}")
    model.eval()
    return Ranker(model, encoder, config, manifest)


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
