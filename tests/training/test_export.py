"""Export and reload: identical scores, cold ids, checksums, MLflow logging."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from algorithms.ranker.artifact import MANIFEST_FILE, WEIGHTS_FILE, load_ranker
from algorithms.ranker.scoring import score
from conf.errors import ArtifactError, UsageError
from tests.training.tables import planted_table, tiny_spec
from training.pipeline import FittedRanker, fit_ranker, table_source


@pytest.fixture(scope="module", params=["dlrm", "dcn"])
def fitted(request) -> FittedRanker:
    from conf.ranker import RankerSettings

    settings = RankerSettings(
        architecture=request.param, embedding_dim=8, dense_arch_layer_sizes=[8],
        over_arch_layer_sizes=[8, 1], dcn_num_layers=1, dcn_low_rank_dim=4, batch_size=256,
        epochs=1, id_min_count=2,
    )
    return fit_ranker(settings, tiny_spec(), table_source(planted_table(600, 0)),
                      table_source(planted_table(200, 1)))


@pytest.fixture
def exported(fitted, tmp_path):
    out = tmp_path / "ranker"
    fitted.export(out, params={"architecture": fitted.config.architecture})
    return out


@pytest.mark.parametrize("kind", ["torchscript", "state_dict"])
def test_reload_scores_identically(fitted, exported, kind):
    table = planted_table(300, 5)
    expected = score(fitted.model, fitted.encoder.encode(table, with_labels=False))
    ranker = load_ranker(exported, kind=kind)
    got = ranker.score_table(table.drop_columns(["label"]), batch_size=64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (300,)


def test_weights_load_without_unpickling(exported):
    state = torch.load(exported / WEIGHTS_FILE, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_manifest_lists_files_inputs_and_metrics(fitted, exported):
    manifest = json.loads((exported / MANIFEST_FILE).read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"model.ts", "weights.pt", "model_config.json", "feature_spec.json",
            "dense_stats.json", "id_maps/user_id.arrow", "id_maps/cats.arrow"} <= paths
    assert manifest["inputs"]["multi_hot"] == ["cats"]
    assert manifest["metrics"]["valid_auc"] == pytest.approx(fitted.result.best_auc)
    assert manifest["architecture"] == fitted.config.architecture
    assert not (exported.parent / "ranker.tmp").exists()


def test_cold_ids_go_to_bucket_zero_and_score(exported):
    ranker = load_ranker(exported)
    base = planted_table(4, 9).drop_columns(["label"])
    cold = base.set_column(0, "user_id", pa.array([10_001, 10_002, 10_003, 10_004]))
    cold = cold.set_column(1, "item_id", pa.array(["new1", "new2", "new3", "new4"]))
    other = cold.set_column(0, "user_id", pa.array([20_001, 20_002, 20_003, 20_004]))
    other = other.set_column(1, "item_id", pa.array([None, "x", "y", "z"]))
    batch = ranker.encoder.encode(cold, with_labels=False)
    offsets = batch.sparse.offset_per_key()
    assert batch.sparse.values()[: offsets[2]].tolist() == [0] * 8  # user and item ids
    a, b = ranker.score_table(cold), ranker.score_table(other)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # every unseen id shares bucket 0


def test_altered_or_missing_files_are_detected(exported):
    (exported / "dense_stats.json").write_text('{"features": []}')
    with pytest.raises(ArtifactError, match="altered"):
        load_ranker(exported)
    (exported / "model.ts").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_ranker(exported)


def test_export_refuses_an_existing_directory(fitted, exported):
    with pytest.raises(UsageError, match="already exists"):
        fitted.export(exported)


def test_bad_kind_is_named(exported):
    with pytest.raises(ValueError, match="'pickle'"):
        load_ranker(exported, kind="pickle")


@pytest.mark.slow
def test_log_to_mlflow(exported, tmp_path):
    import mlflow

    from training.export import log_to_mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("ranker-test", (tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        log_to_mlflow(run, exported, {"valid_auc": 0.75}, {"architecture": "dcn"})
    got = mlflow.get_run(run.info.run_id)
    assert got.data.metrics["valid_auc"] == 0.75
    assert got.data.params["architecture"] == "dcn"
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "ranker")}
    assert "ranker/manifest.json" in files
