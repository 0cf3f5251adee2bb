"""An exported ranker: its files, reading and checking its manifest, loading it to score.

An export directory (written by :func:`training.export.export_ranker`, once) holds:

- ``model.ts``: the network as TorchScript (``torch.jit.script``; inputs
  ``(dense (B, F_dense) float32, sparse KeyedJaggedTensor)``, output logits (B,)).
- ``weights.pt``: the same weights as a plain state dict, for
  ``torch.load(weights_only=True)`` and a rebuild from ``model_config.json``.
- ``model_config.json``: :class:`~algorithms.ranker.model.ModelConfig`.
- ``feature_spec.json``, ``dense_stats.json``, ``id_maps/<feature>.arrow``: the encoder.
- ``manifest.json``: format version, architecture, input columns, metrics, parameters,
  library versions, and every file with its size and SHA-256.

Nothing is unpickled on load: TorchScript archives and ``weights_only`` state dicts only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.model import ModelConfig, RankerModel
from algorithms.ranker.scoring import score
from conf.errors import ArtifactError, UsageError

FORMAT = "recpipe-ranker"
FORMAT_VERSION = 1
MODEL_FILE = "model.ts"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "model_config.json"
MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



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
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
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
            if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
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
        raise UsageError(f"kind must be 'torchscript' or 'state_dict', got {kind!r}")
    model.eval()
    return Ranker(model, encoder, config, manifest)
