"""MLflow helpers with a real MLflow (SQLite store and artifact root in a temporary folder)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conf.gate import PROJECT_ROOT, MlflowSettings
from evaluation.embedding_model import EmbeddingModel
from evaluation.registry import (
    CHAMPION,
    PREVIOUS,
    alias_version,
    ensure_experiment,
    evaluation_run,
    find_version,
    load_embeddings,
    log_values,
    promote,
    register_embeddings,
    run_url,
    tracking,
)

ITEMS = ["i0", "i1", "i2", "i3"]
ITEM_VECS = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.1]], np.float32)
USERS = ["alice", "bob"]
USER_VECS = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
# alice scores: i0 1.0, i1 0.5, i3 0.2, i2 0.0; bob: i2 2.0, i1 1.0, i3 0.2, i0 0.0


def test_relative_paths_resolve_from_the_project_root():
    cfg = MlflowSettings()
    assert cfg.resolved_tracking_uri() == f"sqlite:///{PROJECT_ROOT / 'var/mlflow/mlflow.db'}"
    assert cfg.resolved_artifact_root() == (PROJECT_ROOT / "var/mlflow/artifacts").as_uri()
    other = MlflowSettings(tracking_uri="http://mlflow:5000", artifact_root="s3://b/art/")
    assert other.resolved_tracking_uri() == "http://mlflow:5000"
    assert other.resolved_artifact_root() == "s3://b/art"
    assert run_url(MlflowSettings(ui_url="http://h:5000/"), "3", "abc") == \
        "http://h:5000/#/experiments/3/runs/abc"
    assert run_url(cfg, "3", "abc") is None


def test_recommend_excludes_and_pads():
    model = EmbeddingModel(USERS, USER_VECS, ITEMS, ITEM_VECS)
    exclude = sp.csr_matrix(([1.0], ([1], [2])), shape=(3, 4))  # bob has seen i2
    rows, scores = model.recommend(["alice", "bob", "carol"], 3,
                                   exclude=exclude)
    assert rows.tolist() == [[0, 1, 3], [1, 3, 0], [-1, -1, -1]]
    assert scores[0].tolist() == pytest.approx([1.0, 0.5, 0.2])
    assert model.recommend(["alice"], 9)[0].tolist() == [[0, 1, 3, 2, -1, -1, -1, -1, -1]]


def test_model_checks_shapes_and_reports_non_finite_values():
    with pytest.raises(ValueError, match="have 2 dimensions but item vectors have 3"):
        EmbeddingModel(USERS, USER_VECS, ITEMS, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(3, 2\) for 4 ids"):
        EmbeddingModel(USERS, USER_VECS, ITEMS, np.zeros((3, 2)))
    bad = ITEM_VECS.copy()
    bad[1, 0] = np.nan
    assert EmbeddingModel(USERS, USER_VECS, ITEMS, bad).non_finite() == 1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow")
    return MlflowSettings(tracking_uri=f"sqlite:///{tmp}/db/mlflow.db",
                          artifact_root=str(tmp / "artifacts"), experiment="t",
                          embeddings_model="emb-test")


def test_register_load_predict_and_aliases(store):
    import mlflow

    model = EmbeddingModel(USERS, USER_VECS, ITEMS, ITEM_VECS)
    with tracking(store) as client:
        exp = ensure_experiment(client, store)
        assert ensure_experiment(client, store) == exp
        run_id = evaluation_run(client, exp, "2024-01-01", "als-1")
        assert evaluation_run(client, exp, "2024-01-01", "als-1") == run_id
        assert evaluation_run(client, exp, "2024-01-02", "als-2") != run_id
        v1 = register_embeddings(client, run_id, store.embeddings_model, model, "2024-01-01",
                                 "als-1", {"gold/training_matrix": 4, "silver/items": None})
        assert v1.tags["lake.gold/training_matrix"] == "4"
        assert "lake.silver/items" not in v1.tags
        assert v1.tags["recpipe.eval_run_id"] == run_id and v1.run_id == run_id
        again = register_embeddings(client, run_id, store.embeddings_model, model,
                                    "2024-01-01", "als-1", {})
        assert again.version == v1.version
        assert find_version(client, store.embeddings_model, "2024-01-01").version == v1.version
        assert find_version(client, store.embeddings_model, "1999-01-01") is None

        # the artifacts are arrays and Arrow files, no pickle
        files = _all_files(mlflow, f"models:/{store.embeddings_model}/{v1.version}")
        assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
        assert any(f.endswith("item_vectors.npy") for f in files)
        assert any(f.endswith("items.arrow") for f in files)

        loaded = load_embeddings(store.embeddings_model, str(v1.version))
        assert list(loaded.item_ids) == ITEMS
        np.testing.assert_array_equal(loaded.item_vectors, ITEM_VECS)

        # aliases: first promotion, a second version, a no-op re-promotion
        assert alias_version(client, store.embeddings_model, CHAMPION) is None
        assert promote(client, store.embeddings_model, str(v1.version)) is None
        run2 = evaluation_run(client, exp, "2024-01-02", "als-2")
        v2 = register_embeddings(client, run2, store.embeddings_model, model, "2024-01-02",
                                 "als-2", {})
        assert promote(client, store.embeddings_model, str(v2.version)) == str(v1.version)
        assert str(alias_version(client, store.embeddings_model, CHAMPION).version) == \
            str(v2.version)
        assert str(alias_version(client, store.embeddings_model, PREVIOUS).version) == \
            str(v1.version)
        assert promote(client, store.embeddings_model, str(v2.version)) is None
        assert str(alias_version(client, store.embeddings_model, PREVIOUS).version) == \
            str(v1.version)

        # pyfunc: predict = top-k items of user ids, loaded through the alias
        pyfunc = mlflow.pyfunc.load_model(f"models:/{store.embeddings_model}@{CHAMPION}")
        got = pyfunc.predict(pd.DataFrame({"user_id": ["bob", "nobody"]}), params={"k": 2})
        assert got["item_id"].tolist() == ["i2", "i1"]
        assert got["rank"].tolist() == [1, 2] and set(got["user_id"]) == {"bob"}
        assert got["score"].tolist() == pytest.approx([2.0, 1.0])


def _all_files(mlflow, uri):
    from pathlib import Path

    local = Path(mlflow.artifacts.download_artifacts(uri))
    return [str(p) for p in local.rglob("*") if p.is_file()]


def test_log_values_skips_nan_metrics_and_keeps_first_params(store):
    with tracking(store) as client:
        exp = ensure_experiment(client, store)
        run_id = evaluation_run(client, exp, "2024-02-01", "als-x")
        log_values(client, run_id, params={"a": 1}, metrics={"m": 0.5, "n": math.nan},
                   tags={"t": "x"})
        log_values(client, run_id, params={"a": 2, "b": 3},
                   metrics={f"many/{i}": float(i) for i in range(1500)})
        data = client.get_run(run_id).data
        assert data.params == {"a": "1", "b": "3"}
        assert data.metrics["m"] == 0.5 and "n" not in data.metrics
        assert data.metrics["many/1499"] == 1499.0 and data.tags["t"] == "x"
