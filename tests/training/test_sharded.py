"""The DistributedModelParallel path: on one CPU process (gloo) and, with CUDA, on a GPU."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.model import ModelConfig, build_model
from algorithms.ranker.scoring import predict
from evaluation.metrics import ctr_metrics
from tests.training.tables import planted_table, tiny_spec
from training.sharded import full_state_dict
from training.train import TrainConfig, train


@pytest.fixture
def process_group(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _run_sharded(ranker_settings, device: str):
    table, valid_t = planted_table(2000, 0), planted_table(400, 1)
    enc = FeatureEncoder.fit(tiny_spec(), [table], min_count=1)
    cfg = ModelConfig.from_settings(ranker_settings, enc.spec)
    model = build_model(cfg, seed=0, embedding_device=torch.device("meta"))
    batches = [enc.encode(table.slice(s, 256)) for s in range(0, table.num_rows, 256)]
    valid = enc.encode(valid_t)
    tc = TrainConfig(epochs=3, patience=3, dense_lr=0.01, sparse_lr=0.1, device=device,
                     sharded=True)
    result = train(model, lambda e: batches, lambda: [valid], tc)
    return model, valid, result, cfg


def test_sharded_path_trains_on_one_cpu_process(process_group, ranker_settings):
    model, valid, result, cfg = _run_sharded(ranker_settings, "cpu")
    assert result.best_auc > 0.95
    state = full_state_dict(model)
    plain = build_model(cfg, seed=0)
    plain.load_state_dict(state)
    probs, labels, _ = predict(plain, [valid])
    assert ctr_metrics(probs, labels)["auc"] == pytest.approx(result.best_auc, abs=1e-6)


@pytest.mark.gpu
def test_sharded_path_on_cuda(process_group, ranker_settings):
    model, _, result, _ = _run_sharded(ranker_settings, "cuda")
    assert result.best_auc > 0.95
    assert all(v.device.type == "cpu" for v in full_state_dict(model).values())
