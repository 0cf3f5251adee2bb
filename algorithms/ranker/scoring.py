"""Inference: logits and probabilities of the ranker over batches (the metrics of its
predictions are in :mod:`evaluation.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from algorithms.ranker.batch import RankerBatch


def _autocast(device: torch.device, bf16: bool) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def score(
    model: nn.Module,
    batch: RankerBatch,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> np.ndarray:
    """Probabilities for one (large) batch.

    Args:
        model: a :class:`~algorithms.ranker.model.RankerModel` or its TorchScript export, taking
            ``(dense (B, F_dense), sparse KJT)`` and returning logits (B,).
        batch: the encoded examples (labels and weights are ignored).
        device: where to run.
        bf16: bfloat16 autocast.

    Returns:
        float32 (B,) probabilities in (0, 1).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device, bf16):
            b = batch.to(device)
            logits = model(b.dense, b.sparse)
        return torch.sigmoid(logits.float()).cpu().numpy()
    finally:
        model.train(was_training)


def predict(
    model: nn.Module,
    batches: Iterable[RankerBatch],
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score a stream of batches.

    Returns:
        ``(probs, labels, weights)``, float32 arrays (N,) in stream order.
    """
    probs, labels, weights = [], [], []
    for batch in batches:
        probs.append(score(model, batch, device, bf16))
        labels.append(batch.labels.numpy())
        weights.append(batch.weights.numpy())
    if not probs:
        empty = np.zeros(0, np.float32)
        return empty, empty, empty
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(weights)
