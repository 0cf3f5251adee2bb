"""Settings: The torchrec ranker (DLRM / DCN-v2), owned by ``training/``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.types import NonNegFloat, PositiveFloat, PositiveInt, Section


def _default_bucket_sizes() -> dict[str, int]:
    return {
        "user_id": 2_000_000,
        "item_id": 500_000,
        "item_categories": 2_000,
        "user_age_bucket": 16,
        "user_gender": 8,
        "user_occupation": 64,
        "retrieval_strategies": 16,
    }


class RankerSettings(Section):
    """The torchrec ranker: architecture, feature tables, optimisation and devices.

    Shapes: B examples, F sparse features, D = ``embedding_dim``. The dense arch maps the
    dense features to D, so ``dense_arch_layer_sizes[-1]`` must equal ``embedding_dim`` (the
    model checks it when built and names both numbers); ``over_arch_layer_sizes[-1]`` is 1.
    """

    architecture: Literal["dlrm", "dcn"] = "dcn"
    """``dlrm`` (dot-product interaction) or ``dcn`` (DCN-v2 low-rank cross net, DLRM_DCN)."""
    embedding_dim: PositiveInt = 16
    """D: dimension of every sparse feature's embedding (torchrec needs one D for all)."""
    dense_arch_layer_sizes: list[PositiveInt] = Field(default_factory=lambda: [64, 16])
    """MLP sizes for the dense features; the last one must equal ``embedding_dim``."""
    over_arch_layer_sizes: list[PositiveInt] = Field(default_factory=lambda: [64, 32, 1])
    """MLP sizes on top of the interaction; at least two layers, the last one 1 (the logit)."""
    dcn_num_layers: PositiveInt = 3
    """Cross layers of DCN-v2 (``architecture: dcn`` only)."""
    dcn_low_rank_dim: PositiveInt = 16
    """Rank of each DCN-v2 cross layer's low-rank weight (``architecture: dcn`` only)."""
    bucket_sizes: dict[str, PositiveInt] = Field(default_factory=_default_bucket_sizes)
    """Cap on embedding rows per sparse feature, bucket 0 included. The id map keeps the
    ``bucket - 1`` most frequent training ids; any other id (unseen, rare, cold) maps to the
    reserved bucket 0. The table has ``min(bucket, ids kept + 1)`` rows."""
    default_bucket_size: PositiveInt = 10_000
    """Cap for a sparse feature missing from ``bucket_sizes``."""
    id_min_count: PositiveInt = 2
    """Ids seen fewer times than this in training share bucket 0, so bucket 0 is trained and
    cold ids get a learned embedding rather than a random one."""
    batch_size: PositiveInt = 1024
    """Training examples per step."""
    eval_batch_size: PositiveInt = 8192
    """Examples per step when scoring validation data or at inference."""
    shuffle_buffer_rows: PositiveInt = 65_536
    """Rows held in memory to shuffle the training stream (files are also visited in a
    seeded random order each epoch)."""
    dense_lr: PositiveFloat = 1e-3
    """Adam learning rate of the MLPs and cross net."""
    sparse_lr: PositiveFloat = 0.05
    """Learning rate of the embedding tables' optimizer."""
    sparse_optimizer: Literal["rowwise_adagrad", "adagrad"] = "rowwise_adagrad"
    """Optimizer applied to the embedding tables during backward (fused into FBGEMM's
    kernels when sharded): torchrec ``RowWiseAdagrad`` or ``torch.optim.Adagrad``."""
    weight_decay: NonNegFloat = 0.0
    """L2 weight decay of the dense Adam optimizer."""
    epochs: PositiveInt = 10
    """Most passes over the training data."""
    patience: PositiveInt = 2
    """Stop after this many epochs in a row without a validation AUC gain of ``min_delta``;
    the best epoch's weights are kept."""
    min_delta: NonNegFloat = 1e-4
    """Smallest validation AUC gain that counts as an improvement."""
    bf16: bool = False
    """Run forward passes under bfloat16 autocast (CPU and CUDA); weights stay float32."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Where training runs."""
    sharded: bool = False
    """Wrap the model in torchrec ``DistributedModelParallel`` (needs ``device: cuda`` and a
    process group, e.g. started by ``torchrun``): embedding tables are sharded over GPUs and
    their optimizer is fused into the lookup kernels."""
    negatives_ratio: PositiveFloat = 4.0
    """Negatives (shown candidates without a positive event) kept per positive when
    training examples are built from candidates."""
    seed: int = 42
    """Seed of weight initialisation and the shuffle order."""

    @field_validator("bucket_sizes")
    @classmethod
    def _at_least_two(cls, value: dict[str, int]) -> dict[str, int]:
        small = {k: v for k, v in value.items() if v < 2}
        if small:
            raise ValueError(f"bucket sizes must be >= 2 (bucket 0 is reserved), got {small}")
        return value

    @model_validator(mode="after")
    def _sharded_needs_cuda(self) -> RankerSettings:
        if self.sharded and self.device != "cuda":
            raise ValueError(f"sharded: true needs device: cuda, got device: {self.device}")
        return self
