"""The ranker network: torchrec's EmbeddingBagCollection under DLRM or DLRM_DCN (DCN-v2).

Shapes (torchrec's letters): B batch size, F sparse features, D embedding dimension,
F_dense dense features.

- sparse arch: one embedding table per sparse feature, (B, F, D); multi-hot features are
  mean-pooled, single ids looked up as they are.
- dense arch: MLP (B, F_dense) -> (B, D).
- interaction: ``dlrm``: the dense output and the pairwise dot products of the F + 1
  vectors, (B, D + F + F(F-1)/2); ``dcn``: a low-rank DCN-v2 cross net over the
  flattened (B, (F + 1) * D).
- over arch: MLP -> (B, 1), returned as logits (B,).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchrec.models.dlrm import DLRM, DLRM_DCN, InteractionDCNArch
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from algorithms.ranker.features import FeatureSpec, SparseFeature
from conf.ranker import RankerSettings

ARCHITECTURES = ("dlrm", "dcn")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (saved as JSON beside the weights).

    Attributes:
        architecture: ``dlrm`` or ``dcn``.
        embedding_dim: D.
        sparse_features: the F tables, in model order.
        dense_in_features: F_dense.
        dense_arch_layer_sizes: dense MLP sizes, the last equal to D.
        over_arch_layer_sizes: over MLP sizes, at least two, the last 1.
        dcn_num_layers: cross layers (``dcn`` only).
        dcn_low_rank_dim: rank of each cross layer (``dcn`` only).
    """

    architecture: str
    embedding_dim: int
    sparse_features: tuple[SparseFeature, ...]
    dense_in_features: int
    dense_arch_layer_sizes: tuple[int, ...]
    over_arch_layer_sizes: tuple[int, ...]
    dcn_num_layers: int = 3
    dcn_low_rank_dim: int = 16

    @classmethod
    def from_settings(cls, settings: RankerSettings, spec: FeatureSpec) -> ModelConfig:
        """The network for ``spec``'s features with the sizes in ``settings``."""
        return cls(
            architecture=settings.architecture,
            embedding_dim=settings.embedding_dim,
            sparse_features=spec.sparse,
            dense_in_features=len(spec.dense),
            dense_arch_layer_sizes=tuple(settings.dense_arch_layer_sizes),
            over_arch_layer_sizes=tuple(settings.over_arch_layer_sizes),
            dcn_num_layers=settings.dcn_num_layers,
            dcn_low_rank_dim=settings.dcn_low_rank_dim,
        )

    def to_json(self) -> str:
        """Serialise (see :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Parse what :meth:`to_json` wrote."""
        data = json.loads(text)
        data["sparse_features"] = tuple(SparseFeature(**f) for f in data["sparse_features"])
        data["dense_arch_layer_sizes"] = tuple(data["dense_arch_layer_sizes"])
        data["over_arch_layer_sizes"] = tuple(data["over_arch_layer_sizes"])
        return cls(**data)


class ScriptableLowRankCrossNet(LowRankCrossNet):
    """torchrec's ``LowRankCrossNet`` with a loop TorchScript can compile.

    Same parameters, same state-dict keys, same maths
    ``x_{l+1} = x_0 * (W_l (V_l x_l) + b_l) + x_l``; the upstream loop indexes a
    ``ParameterList`` with a variable, which ``torch.jit.script`` rejects.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (upstream name)
        """(B, N) -> (B, N)."""
        x_0 = input
        x_l = x_0
        for v, w, b in zip(self.V_kernels, self.W_kernels, self.bias):  # noqa: B905
            x_l = x_0 * (nn.functional.linear(nn.functional.linear(x_l, v), w) + b) + x_l
        return x_l


def _check(config: ModelConfig) -> None:
    d = config.embedding_dim
    if config.architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {ARCHITECTURES}, got {config.architecture!r}"
        )
    if d < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {d}")
    if config.dense_in_features < 1:
        raise ValueError(
            f"the model needs at least one dense feature, got {config.dense_in_features}"
        )
    if not config.sparse_features:
        raise ValueError("the model needs at least one sparse feature, got 0")
    if not config.dense_arch_layer_sizes:
        raise ValueError("dense_arch_layer_sizes must not be empty")
    if config.dense_arch_layer_sizes[-1] != d:
        raise ValueError(
            f"the dense arch's last layer ({config.dense_arch_layer_sizes[-1]}) must equal "
            f"embedding_dim ({d}): the interaction combines them"
        )
    over = config.over_arch_layer_sizes
    if len(over) < 2 or over[-1] != 1:
        raise ValueError(
            f"over_arch_layer_sizes must have at least 2 layers ending in 1, got {list(over)}"
        )
    if config.architecture == "dcn" and (config.dcn_num_layers < 1 or config.dcn_low_rank_dim < 1):
        raise ValueError(
            f"dcn_num_layers ({config.dcn_num_layers}) and dcn_low_rank_dim "
            f"({config.dcn_low_rank_dim}) must be >= 1"
        )


def embedding_bag_collection(
    config: ModelConfig, device: torch.device | None = None
) -> EmbeddingBagCollection:
    """One table ``t_<feature>`` of (num_buckets, D) per sparse feature.

    ``device="meta"`` defers allocation (the sharded path materialises tables on GPUs).
    """
    tables = [
        EmbeddingBagConfig(
            name=f"t_{f.name}",
            embedding_dim=config.embedding_dim,
            num_embeddings=f.num_buckets,
            feature_names=[f.name],
            pooling=PoolingType.MEAN if f.multi_hot else PoolingType.SUM,
        )
        for f in config.sparse_features
    ]
    return EmbeddingBagCollection(tables=tables, device=device or torch.device("cpu"))


class RankerModel(nn.Module):
    """DLRM or DCN-v2 over the ranker's features; outputs one logit per example.

    Args:
        config: the network's sizes; checked here (``ValueError`` naming both numbers of a
            mismatch).
        embedding_device: where the embedding tables live; ``meta`` for the sharded path.
    """

    # TorchScript compiles properties unless listed here; this one is for training only.
    __jit_unused_properties__ = ["embeddings"]

    def __init__(self, config: ModelConfig, embedding_device: torch.device | None = None) -> None:
        super().__init__()
        _check(config)
        self.config = config
        ebc = embedding_bag_collection(config, embedding_device)
        dense_sizes = list(config.dense_arch_layer_sizes)
        over_sizes = list(config.over_arch_layer_sizes)
        if config.architecture == "dlrm":
            self.dlrm: DLRM = DLRM(
                embedding_bag_collection=ebc,
                dense_in_features=config.dense_in_features,
                dense_arch_layer_sizes=dense_sizes,
                over_arch_layer_sizes=over_sizes,
            )
        else:
            self.dlrm = DLRM_DCN(
                embedding_bag_collection=ebc,
                dense_in_features=config.dense_in_features,
                dense_arch_layer_sizes=dense_sizes,
                over_arch_layer_sizes=over_sizes,
                dcn_num_layers=config.dcn_num_layers,
                dcn_low_rank_dim=config.dcn_low_rank_dim,
            )
            num_sparse = len(config.sparse_features)
            self.dlrm.inter_arch = InteractionDCNArch(
                num_sparse_features=num_sparse,
                crossnet=ScriptableLowRankCrossNet(
                    in_features=(num_sparse + 1) * config.embedding_dim,
                    num_layers=config.dcn_num_layers,
                    low_rank=config.dcn_low_rank_dim,
                ),
            )

    @property
    def embeddings(self) -> EmbeddingBagCollection:
        """The embedding tables (their parameters get the sparse optimizer)."""
        return self.dlrm.sparse_arch.embedding_bag_collection

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """Score a batch.

        Args:
            dense: float32 (B, F_dense), standardised dense features.
            sparse: KeyedJaggedTensor of the F sparse features (bucket ids), stride B.

        Returns:
            float (B,) logits; ``sigmoid`` gives the click/positive probability.
        """
        return self.dlrm(dense, sparse).squeeze(-1)


def build_model(
    config: ModelConfig, seed: int, embedding_device: torch.device | None = None
) -> RankerModel:
    """Build a :class:`RankerModel` whose initial weights depend only on ``seed``.

    The global torch random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RankerModel(config, embedding_device)
