"""Inference and CTR metrics: logits and probabilities over batches, AUC and log loss."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from training.batch import RankerBatch

_EPS = 1e-7


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
        model: a :class:`~training.model.RankerModel` or its TorchScript export, taking
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


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to [1e-7, 1 - 1e-7]."""
    p = np.clip(probs.astype(np.float64), _EPS, 1 - _EPS)
    y = labels.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def ctr_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC (torchmetrics' ROC AUC, ties counted half) and log loss of N predictions.

    Args:
        probs: float (N,) predicted probabilities.
        labels: (N,) 0/1 labels.

    Returns:
        ``{"auc", "logloss", "n", "positive_rate"}``; AUC is NaN when one class is absent.

    Raises:
        ValueError: the arrays differ in length or are empty.
    """
    if probs.shape != labels.shape or probs.ndim != 1:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} must be equal (N,)")
    if len(probs) == 0:
        raise ValueError("cannot compute CTR metrics of 0 predictions")
    y = labels.astype(np.int64)
    if y.min() == y.max():
        auc = float("nan")
    else:
        auc = float(binary_auroc(torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(y)))
    return {
        "auc": auc,
        "logloss": log_loss(probs, labels),
        "n": float(len(probs)),
        "positive_rate": float(y.mean()),
    }
