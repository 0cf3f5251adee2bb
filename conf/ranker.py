"""Settings: The torchrec ranker (DLRM / DCN-v2), owned by ``training/``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from conf.types import Fraction, NonNegFloat, PositiveFloat, PositiveInt, Section


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
    seed: int = 42
    """Seed of weight initialisation, the shuffle order, the validation users and the
    random negatives."""

    # -- training examples from candidates (``recpipe ranker examples``) -------------------
    label_days: PositiveInt = 14
    """The examples of date D are the candidates of D' = D - ``label_days``, labelled by the
    positive events after the training cutoff of D' up to the training cutoff of D."""
    example_windows: PositiveInt = 6
    """Label windows the ranker of D trains on: the examples of D and of D - k *
    ``label_days`` for 0 < k < ``example_windows`` (each built by its own night; a missing
    partition is logged and skipped). More windows give more users and positives, and item
    effects learned over several fortnights rather than memorised from the last one."""
    label_event_weights: dict[str, PositiveFloat] = Field(
        default_factory=lambda: {"click": 1.0, "add_to_cart": 2.0, "purchase": 4.0,
                                 "rating": 1.0})
    """Event types that make a (user, item) pair positive, each with the loss weight of its
    positive example (a pair with several positive events takes the largest)."""
    label_min_rating: float = 4.0
    """A ``rating`` event is positive only when its value is at least this (MovieLens: 4)."""
    positive_users_only: bool = True
    """Keep only the candidates of users with a positive event in the label window: the
    others carry no ranking signal and would swamp the positives with negatives."""
    add_missed_positives: bool = False
    """Also add the positive pairs the candidates missed as rows (no retrieval scores, no
    strategies). Off by default: the ranker only ever scores candidates, and these rows
    would be the only positives without a retrieval strategy."""
    negatives_ratio: NonNegFloat = 1.0
    """Random negatives per positive of a user: catalogue items drawn uniformly (seeded per
    user and date) among those the user has no candidate row and no event with, up to the
    label cutoff. The hard negatives are the user's candidates without a positive event."""
    valid_fraction: Fraction = 0.2
    """Share of the example users held out (seeded) for early stopping and the reported
    AUC, log loss and NDCG."""
    max_train_examples: PositiveInt | None = 2_000_000
    """Example budget of the nightly training: whole users, drawn (seeded) across the label
    windows, until their rows reach this many; the rest are not read (None: every row).
    With both budgets set, ``recpipe ranker examples`` also builds a window's examples for
    only as many positive users (hash-sampled) as the two budgets can read."""
    max_valid_examples: PositiveInt | None = 500_000
    """The same budget for the held-out users (their draw is independent of the training
    budget, so two budgets are compared on the same validation users)."""
    eval_k: PositiveInt = 10
    """Cutoff of the NDCG of ranked candidates reported for held-out users."""
    age_bins: list[float] = Field(default_factory=lambda: [18, 25, 35, 45, 50, 56])
    """Edges of ``user_age_bucket`` (bucket ``b<i>`` = number of edges at or below the age;
    missing or unreadable age: null, the cold bucket)."""
    user_attributes: dict[str, str] = Field(
        default_factory=lambda: {"user_age_bucket": "age", "user_gender": "gender",
                                 "user_occupation": "occupation"})
    """Key in ``silver/users.attributes`` of each user feature."""

    # -- exports and batch scoring ------------------------------------------------------
    model_dir: str | None = None
    """Folder of the nightly exports, one ``<ds>/`` per date; relative paths start at the
    project root. None: ``<lake_root>/../models/ranker`` (a local lake only)."""
    retrieval_weight: Fraction | Literal["validation"] = "validation"
    """Weight ``w`` of the retrieval blend in the final candidate score: ``(1 - w) *
    r(ranker) + w * r(retrieval)``, ``r`` a candidate's per-user rank normalised to (0, 1]
    (1 = best); 0 scores by the ranker's probability alone, 1 keeps the retrieval order.
    ``validation``: training picks the weight of ``retrieval_weight_grid`` with the best
    NDCG@``eval_k`` on its held-out example users and stores it in the export's manifest
    (metric ``retrieval_weight``); the precompute uses that one. A number fixes it."""
    retrieval_weight_grid: list[Fraction] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(11)])
    """Weights tried on the validation users when ``retrieval_weight`` is ``validation``;
    ties go to the larger weight (the retrieval order is the safer default)."""
    score_threads: PositiveInt = 1
    """Torch threads of each Spark task scoring candidates (tasks already run in parallel)."""

    @field_validator("bucket_sizes")
    @classmethod
    def _at_least_two(cls, value: dict[str, int]) -> dict[str, int]:
        small = {k: v for k, v in value.items() if v < 2}
        if small:
            raise ValueError(f"bucket sizes must be >= 2 (bucket 0 is reserved), got {small}")
        return value

    @field_validator("retrieval_weight_grid")
    @classmethod
    def _not_empty(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("retrieval_weight_grid must hold at least one weight")
        return sorted(set(value))

    @field_validator("age_bins")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"age_bins must be strictly increasing, got {value}")
        return value

    @model_validator(mode="after")
    def _sharded_needs_cuda(self) -> RankerSettings:
        if self.sharded and self.device != "cuda":
            raise ValueError(f"sharded: true needs device: cuda, got device: {self.device}")
        return self
