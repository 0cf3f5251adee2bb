"""The ranker's batch format.

Shapes: B examples, F_dense dense features, F sparse features. A :class:`RankerBatch` is
what :class:`~algorithms.ranker.encoder.FeatureEncoder` makes of an Arrow record batch and
what the model, the training loop and :func:`~algorithms.ranker.scoring.score` consume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor


@dataclass
class RankerBatch:
    """One batch of encoded examples.

    Attributes:
        dense: float32 (B, F_dense), standardised dense features.
        sparse: KeyedJaggedTensor with the F sparse feature names as keys (model order);
            values are int64 bucket ids in ``[0, num_buckets)``, bucket 0 being the
            reserved bucket of unseen/cold ids. Single-id features have length 1 per row,
            multi-hot features any length (0 for an empty or null list).
        labels: float32 (B,), 0 or 1 (zeros when scoring unlabelled data).
        weights: float32 (B,), example weights of the loss (ones by default).
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self) -> None:
        b = self.dense.shape[0]
        if self.dense.dim() != 2:
            raise ValueError(f"dense must be (B, F_dense), got shape {tuple(self.dense.shape)}")
        if self.labels.shape != (b,) or self.weights.shape != (b,):
            raise ValueError(
                f"labels and weights must be ({b},), got {tuple(self.labels.shape)} "
                f"and {tuple(self.weights.shape)}"
            )
        if self.sparse.stride() != b:
            raise ValueError(f"sparse features hold {self.sparse.stride()} rows, dense {b}")

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RankerBatch:
        """Return the batch on ``device``."""
        return RankerBatch(
            dense=self.dense.to(device, non_blocking=non_blocking),
            sparse=self.sparse.to(torch.device(device), non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            weights=self.weights.to(device, non_blocking=non_blocking),
        )
