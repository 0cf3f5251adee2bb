"""The training loop: weighted BCE, Adam on the MLPs, a sparse optimizer on the tables.

The embedding tables get their optimizer applied during backward
(``_apply_optimizer_in_backward``: torchrec ``RowWiseAdagrad`` or ``Adagrad``); under
``DistributedModelParallel`` that optimizer is fused into FBGEMM's lookup kernels, on one
CPU it updates only the rows a batch touched (their gradients are the only non-zero ones).
Every other parameter is trained with Adam. After each epoch the model is scored on the
validation stream; training stops once the validation AUC has not improved by
``min_delta`` for ``patience`` epochs in a row, and the best epoch's weights are restored.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributed.optim import _apply_optimizer_in_backward
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from algorithms.ranker.batch import RankerBatch
from algorithms.ranker.model import RankerModel
from algorithms.ranker.scoring import predict
from conf.errors import TrainingError
from conf.ranker import RankerSettings
from evaluation.metrics import ctr_metrics

log = logging.getLogger(__name__)

SPARSE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "rowwise_adagrad": RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run (see :class:`conf.ranker.RankerSettings`)."""

    epochs: int = 10
    patience: int = 2
    min_delta: float = 1e-4
    dense_lr: float = 1e-3
    sparse_lr: float = 0.05
    sparse_optimizer: str = "rowwise_adagrad"
    weight_decay: float = 0.0
    bf16: bool = False
    device: str = "cpu"
    sharded: bool = False

    def __post_init__(self) -> None:
        if self.sparse_optimizer not in SPARSE_OPTIMIZERS:
            raise ValueError(
                f"sparse_optimizer must be one of {sorted(SPARSE_OPTIMIZERS)}, "
                f"got {self.sparse_optimizer!r}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    @classmethod
    def from_settings(cls, s: RankerSettings) -> TrainConfig:
        """Take the optimisation fields of the ranker settings."""
        return cls(
            epochs=s.epochs,
            patience=s.patience,
            min_delta=s.min_delta,
            dense_lr=s.dense_lr,
            sparse_lr=s.sparse_lr,
            sparse_optimizer=s.sparse_optimizer,
            weight_decay=s.weight_decay,
            bf16=s.bf16,
            device=s.device,
            sharded=s.sharded,
        )


@dataclass
class EpochStats:
    """What one epoch did: mean training loss, examples, validation metrics, and the seconds
    of the training pass (reading, shuffling and encoding the stream included)."""

    epoch: int
    train_loss: float
    train_examples: int
    train_seconds: float
    valid_auc: float
    valid_logloss: float


@dataclass
class TrainResult:
    """The outcome of :func:`train`; the model holds the best epoch's weights."""

    best_epoch: int
    best_auc: float
    best_logloss: float
    stopped_early: bool
    history: list[EpochStats] = field(default_factory=list)

    @property
    def train_samples_per_s(self) -> float:
        """Training throughput over all epochs (examples / second of training steps)."""
        seconds = sum(e.train_seconds for e in self.history)
        examples = sum(e.train_examples for e in self.history)
        return examples / seconds if seconds > 0 else float("nan")


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean binary cross-entropy of logits (B,), labels (B,), weights (B,)."""
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), labels, reduction="none"
    )
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def prepare(model: RankerModel, cfg: TrainConfig) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Attach the sparse optimizer, place (or shard) the model, build the dense optimizer.

    Returns:
        ``(module, dense_optimizer)``: the module to train (the model itself, or its
        ``DistributedModelParallel`` wrapper when ``cfg.sharded``) and Adam over every
        parameter that is not an embedding table.
    """
    if any(hasattr(p, "_in_backward_optimizers") for p in model.embeddings.parameters()):
        raise ValueError("the model was already prepared for training; build a fresh one")
    _apply_optimizer_in_backward(
        SPARSE_OPTIMIZERS[cfg.sparse_optimizer],
        model.embeddings.parameters(),
        {"lr": cfg.sparse_lr},
    )
    if cfg.sharded:
        from training.sharded import shard

        module: nn.Module = shard(model)
    else:
        module = model.to(torch.device(cfg.device))
    dense_params = [p for _, p in in_backward_optimizer_filter(module.named_parameters())]
    optimizer = torch.optim.Adam(dense_params, lr=cfg.dense_lr, weight_decay=cfg.weight_decay)
    return module, optimizer


def train(
    model: RankerModel,
    train_stream: Callable[[int], Iterable[RankerBatch]],
    valid_stream: Callable[[], Iterable[RankerBatch]],
    cfg: TrainConfig,
) -> TrainResult:
    """Train with early stopping on validation AUC.

    Args:
        model: a freshly built model (seed its construction for reproducible weights).
        train_stream: ``epoch -> batches``; called once per epoch (epochs count from 0),
            so it can reshuffle with a seed derived from the epoch.
        valid_stream: ``() -> batches`` of the validation data.
        cfg: optimisation settings.

    Returns:
        The epochs' statistics; ``model`` is left in eval mode with the best weights.

    Raises:
        TrainingError: an epoch had no training data, validation had no data or only one
            class, or the loss became NaN/inf.
    """
    device = torch.device(cfg.device)
    module, optimizer = prepare(model, cfg)
    best = TrainResult(
        best_epoch=-1, best_auc=-math.inf, best_logloss=math.nan, stopped_early=False
    )
    best_state: dict[str, torch.Tensor] | None = None
    waited = 0
    for epoch in range(cfg.epochs):
        module.train()
        loss_sum, examples, started = 0.0, 0, time.perf_counter()
        for batch in train_stream(epoch):
            b = batch.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = module(b.dense, b.sparse)
            loss = weighted_bce(logits, b.labels, b.weights)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(b)
            examples += len(b)
        seconds = time.perf_counter() - started
        if examples == 0:
            raise TrainingError(f"epoch {epoch} had no training examples")
        probs, labels, _ = predict(module, valid_stream(), device, cfg.bf16)
        if len(probs) == 0:
            raise TrainingError("the validation stream is empty")
        metrics = ctr_metrics(probs, labels)
        if math.isnan(metrics["auc"]):
            raise TrainingError("validation labels hold one class only: AUC is undefined")
        stats = EpochStats(
            epoch, loss_sum / examples, examples, seconds, metrics["auc"], metrics["logloss"]
        )
        best.history.append(stats)
        log.info(
            "epoch %d: train loss %.4f (%d examples, %.0f/s), valid AUC %.4f logloss %.4f",
            epoch, stats.train_loss, examples, examples / max(seconds, 1e-9),
            stats.valid_auc, stats.valid_logloss,
        )
        if stats.valid_auc > best.best_auc + cfg.min_delta:
            best.best_epoch, best.best_auc = epoch, stats.valid_auc
            best.best_logloss = stats.valid_logloss
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            waited = 0
        else:
            waited += 1
            if waited >= cfg.patience:
                best.stopped_early = True
                log.info("early stop after epoch %d; best epoch %d", epoch, best.best_epoch)
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return best
