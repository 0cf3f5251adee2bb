"""The network: shapes, dimension checks, the scriptable cross net, seeded construction."""

from __future__ import annotations

import pytest
import torch
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from algorithms.ranker.features import SparseFeature
from algorithms.ranker.model import ModelConfig, RankerModel, ScriptableLowRankCrossNet, build_model

B, F, D, F_DENSE = 3, 2, 4, 5


def config(arch: str = "dcn", **kw) -> ModelConfig:
    base = dict(
        architecture=arch,
        embedding_dim=D,
        sparse_features=(SparseFeature("a", 10), SparseFeature("b", 6, multi_hot=True)),
        dense_in_features=F_DENSE,
        dense_arch_layer_sizes=(8, D),
        over_arch_layer_sizes=(8, 1),
        dcn_num_layers=2,
        dcn_low_rank_dim=3,
    )
    base.update(kw)
    return ModelConfig(**base)


def kjt() -> KeyedJaggedTensor:
    # a: one id per row; b: rows hold [1, 2], [], [5]
    return KeyedJaggedTensor(
        keys=["a", "b"],
        values=torch.tensor([1, 0, 9, 1, 2, 5]),
        lengths=torch.tensor([1, 1, 1, 2, 0, 1]),
    )


@pytest.mark.parametrize("arch", ["dlrm", "dcn"])
def test_shapes(arch):
    model = RankerModel(config(arch))
    dense = torch.randn(B, F_DENSE)
    assert model.dlrm.sparse_arch(kjt()).shape == (B, F, D)
    assert model.dlrm.dense_arch(dense).shape == (B, D)
    logits = model(dense, kjt())
    assert logits.shape == (B,)
    assert torch.isfinite(logits).all()


def test_multi_hot_is_mean_pooled_and_empty_bag_is_zero():
    model = RankerModel(config())
    table = model.embeddings.embedding_bags["t_b"].weight.detach()
    pooled = model.dlrm.sparse_arch(kjt()).detach()  # (B, F, D); feature b is index 1
    torch.testing.assert_close(pooled[0, 1], (table[1] + table[2]) / 2)
    torch.testing.assert_close(pooled[1, 1], torch.zeros(D))
    torch.testing.assert_close(pooled[2, 1], table[5])


def test_dense_arch_mismatch_names_both_numbers():
    with pytest.raises(ValueError, match=r"\(7\).*embedding_dim \(4\)"):
        RankerModel(config(dense_arch_layer_sizes=(16, 7)))


@pytest.mark.parametrize("over", [(8, 2), (1,)])
def test_over_arch_must_end_in_one(over):
    with pytest.raises(ValueError, match="over_arch_layer_sizes"):
        RankerModel(config(over_arch_layer_sizes=over))


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="'wide'"):
        RankerModel(config("wide"))


def test_one_bucket_table_is_refused():
    with pytest.raises(ValueError, match="num_buckets must be >= 2"):
        SparseFeature("a", 1)


def test_scriptable_cross_net_matches_torchrec():
    torch.manual_seed(0)
    upstream = LowRankCrossNet(in_features=12, num_layers=3, low_rank=4)
    ours = ScriptableLowRankCrossNet(in_features=12, num_layers=3, low_rank=4)
    with torch.no_grad():  # upstream initialises the biases to zero: make them matter
        for bias in upstream.bias:
            bias.uniform_(-1, 1)
    ours.load_state_dict(upstream.state_dict())
    x = torch.randn(5, 12)
    torch.testing.assert_close(ours(x), upstream(x))
    torch.testing.assert_close(torch.jit.script(ours)(x), upstream(x))


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(config(), seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_model(config(), seed=7)
    c = build_model(config(), seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_config_json_round_trip():
    cfg = config()
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_from_settings_takes_sizes_and_features(ranker_settings):
    from tests.training.tables import tiny_spec

    cfg = ModelConfig.from_settings(ranker_settings, tiny_spec())
    assert cfg.dense_in_features == 2
    assert [f.name for f in cfg.sparse_features] == ["user_id", "item_id", "gender", "cats"]
    assert cfg.dense_arch_layer_sizes == (16, 8) and cfg.embedding_dim == 8
