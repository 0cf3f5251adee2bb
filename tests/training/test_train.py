"""The training loop: planted rules are learnt, the loss, optimizers, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from algorithms.ranker.encoder import FeatureEncoder
from algorithms.ranker.model import ModelConfig, build_model
from algorithms.ranker.scoring import predict
from conf.errors import TrainingError
from evaluation.metrics import ctr_metrics
from tests.training.tables import planted_table, tiny_spec
from training.pipeline import fit_ranker, table_source
from training.train import TrainConfig, prepare, train, weighted_bce


def test_weighted_bce_hand_value():
    logits = torch.tensor([0.0, math.log(3.0)])
    labels = torch.tensor([1.0, 0.0])
    weights = torch.tensor([1.0, 3.0])
    # -log(sigmoid(0)) = ln 2; -log(1 - sigmoid(ln 3)) = ln 4; (ln2 + 3 ln4) / 4 = 7 ln2 / 4
    assert weighted_bce(logits, labels, weights).item() == pytest.approx(7 * math.log(2) / 4)


@pytest.mark.parametrize("arch", ["dlrm", "dcn"])
@pytest.mark.parametrize("rule", ["item", "dense"])
def test_planted_rule_is_learnt(arch, rule, ranker_settings):
    settings = ranker_settings.model_copy(update={"architecture": arch})
    sizes = ((4000, 1), (800, 2), (800, 3))
    train_t, valid_t, test_t = (planted_table(n, s, rule) for n, s in sizes)
    fitted = fit_ranker(settings, tiny_spec(), table_source(train_t), table_source(valid_t))
    probs, labels, _ = predict(fitted.model, [fitted.encoder.encode(test_t)])
    assert ctr_metrics(probs, labels)["auc"] > 0.95
    assert fitted.result.best_auc > 0.95


def _encoded(n: int, seed: int, enc: FeatureEncoder | None = None):
    table = planted_table(n, seed)
    enc = enc or FeatureEncoder.fit(tiny_spec(), [table], min_count=1)
    return enc, enc.encode(table)


def _model(enc: FeatureEncoder, settings, seed: int = 0):
    return build_model(ModelConfig.from_settings(settings, enc.spec), seed)


def test_sparse_optimizer_touches_only_looked_up_rows(ranker_settings):
    enc, batch = _encoded(200, 0)
    model = _model(enc, ranker_settings)
    module, optimizer = prepare(model, TrainConfig(sparse_lr=0.1))
    table = model.embeddings.embedding_bags["t_user_id"].weight
    before = table.detach().clone()
    loss = weighted_bce(module(batch.dense, batch.sparse), batch.labels, batch.weights)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    changed = (table.detach() != before).any(dim=1)
    offsets = batch.sparse.offset_per_key()
    seen = set(batch.sparse.values()[offsets[0] : offsets[1]].tolist())
    assert set(torch.nonzero(changed).flatten().tolist()) == seen


def test_preparing_twice_is_refused(ranker_settings):
    enc, _ = _encoded(50, 0)
    model = _model(enc, ranker_settings)
    prepare(model, TrainConfig())
    with pytest.raises(ValueError, match="already prepared"):
        prepare(model, TrainConfig())


def test_no_improvement_stops_after_patience_epochs(ranker_settings):
    enc, batch = _encoded(300, 0)
    _, valid = _encoded(300, 1, enc)
    model = _model(enc, ranker_settings)
    frozen = TrainConfig(epochs=10, patience=2, dense_lr=1e-12, sparse_lr=1e-12)
    result = train(model, lambda epoch: [batch], lambda: [valid], frozen)
    assert result.stopped_early
    assert len(result.history) == 3  # epoch 0 is best; 1 and 2 do not improve
    assert result.best_epoch == 0


def test_best_epoch_weights_are_restored(ranker_settings):
    enc, batch = _encoded(1000, 0)
    _, valid = _encoded(300, 1, enc)
    model = _model(enc, ranker_settings)
    cfg = TrainConfig(epochs=4, patience=4, dense_lr=0.05, sparse_lr=0.5)
    result = train(model, lambda epoch: [batch], lambda: [valid], cfg)
    probs, labels, _ = predict(model, [valid])
    assert ctr_metrics(probs, labels)["auc"] == pytest.approx(result.best_auc, abs=1e-9)
    assert result.best_auc == max(e.valid_auc for e in result.history)


def test_bf16_autocast_trains(ranker_settings):
    settings = ranker_settings.model_copy(update={"bf16": True, "epochs": 1})
    fitted = fit_ranker(
        settings, tiny_spec(), table_source(planted_table(500, 0)),
        table_source(planted_table(200, 1)),
    )
    assert math.isfinite(fitted.result.history[0].train_loss)
    assert fitted.model.embeddings.embedding_bags["t_item_id"].weight.dtype == torch.float32


def test_one_class_validation_is_an_error(ranker_settings):
    enc, batch = _encoded(100, 0)
    valid = planted_table(100, 1)
    valid = valid.set_column(valid.schema.get_field_index("label"), "label",
                             [np.zeros(100, np.float32)])
    model = _model(enc, ranker_settings)
    with pytest.raises(TrainingError, match="one class"):
        train(model, lambda e: [batch], lambda: [enc.encode(valid)], TrainConfig(epochs=1))


def test_bad_train_config_is_named():
    with pytest.raises(ValueError, match="'sgd'"):
        TrainConfig(sparse_optimizer="sgd")
