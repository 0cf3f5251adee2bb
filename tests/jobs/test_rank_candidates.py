"""Nightly training on lake examples (export, MLflow version, champion alias) and ranking a
date's candidates with the export."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from algorithms.ranker.features import CANDIDATE_DENSE
from conf.gate import MlflowSettings
from jobs.lake import Lake
from jobs.tables import EXAMPLES
from tests.training.examples_lake import D2, ITEMS, write_events, write_gold
from tests.training.test_examples import make_settings

pytestmark = pytest.mark.spark

GOOD = {"i2", "i4", "i6"}
"""The planted rule of the training examples: these items are the positives."""
TINY = {"embedding_dim": 4, "dense_arch_layer_sizes": [8, 4], "over_arch_layer_sizes": [8, 1],
        "dcn_num_layers": 1, "dcn_low_rank_dim": 2, "batch_size": 64, "eval_batch_size": 256,
        "shuffle_buffer_rows": 512, "epochs": 12, "patience": 4, "id_min_count": 1,
        "dense_lr": 0.01, "sparse_lr": 0.2, "valid_fraction": 0.25, "retrieval_weight": 0.0,
        "example_windows": 1}


def planted_examples(n_users: int, seed: int) -> pa.Table:
    """Every (user, item) pair of ``n_users`` users and the six items; label: item in GOOD;
    dense features are noise."""
    rng = np.random.default_rng(seed)
    users = [f"x{u}" for u in range(n_users) for _ in ITEMS]
    items = [i for _ in range(n_users) for i in ITEMS]
    n = len(users)
    labels = np.array([1.0 if i in GOOD else 0.0 for i in items])
    strategies = pa.array([["ann"]] * n, pa.list_(pa.string()))
    return pa.table({
        "user_id": users, "item_id": items, "origin": ["candidate"] * n,
        "item_categories": pa.array([["Drama"]] * n, pa.list_(pa.string())),
        "user_age_bucket": ["b2"] * n, "user_gender": rng.choice(["F", "M"], n).tolist(),
        "user_occupation": [None] * n, "retrieval_strategies": strategies,
        **{name: rng.normal(size=n) for name, _ in CANDIDATE_DENSE},
        "label": labels, "weight": np.ones(n), "source_ds": ["2024-01-10"] * n,
        "ds": [D2] * n,
    })


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A lake with D2's gold tables and planted examples, and the ranker trained on them."""
    from training.nightly import run_train_ds

    tmp = tmp_path_factory.mktemp("ranked")
    settings = make_settings(tmp, **TINY)
    lake = Lake(settings)
    write_events(lake)
    # retrieval ranks the bad items first
    write_gold(lake, D2, candidates={
        "u1": [("i1", 0.9, ["ann"]), ("i3", 0.8, ["ann"]), ("i5", 0.7, ["content"]),
               ("i2", 0.3, ["ann"]), ("i4", 0.2, ["popular"]), ("i6", 0.1, ["session"])],
        "u2": [("i5", 0.9, ["ann"]), ("i6", 0.5, ["ann"]), ("i1", 0.4, ["ann"]),
               ("i2", 0.1, ["ann"])]})
    lake.overwrite_partitions(EXAMPLES.name, planted_examples(60, seed=1))
    mlflow_cfg = MlflowSettings(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                                artifact_root=str(tmp / "artifacts"))
    summary = run_train_ds(settings, D2, mlflow_cfg)
    return settings, summary, mlflow_cfg


def test_training_exports_and_reports_holdout_metrics(trained):
    from jobs.rank_candidates import export_dir, has_export

    settings, summary, _ = trained
    assert has_export(settings, D2)
    assert summary["export"] == str(export_dir(settings, D2))
    m = summary["metrics"]
    # 15 of 60 users held out, 6 rows each; the planted rule is learnable
    assert m["valid_rows"] == 90 and m["train_rows"] == 270
    assert m["valid_auc"] > 0.95
    # by the (noise) retrieval score the three positives land anywhere; ranked they lead
    assert m["valid_ndcg_at_10_ranked"] == pytest.approx(1.0)
    assert m["valid_ndcg_at_10_ranked"] > m["valid_ndcg_at_10_retrieval"]
    assert m["valid_ndcg_at_10_fused"] == pytest.approx(m["valid_ndcg_at_10_ranked"])  # w = 0


def test_registered_version_is_tagged_and_can_be_promoted(trained):
    from evaluation import registry

    _, summary, cfg = trained
    name, version = summary["registered"].split("/")
    assert name == "recpipe-ranker"
    with registry.tracking(cfg) as client:
        mv = client.get_model_version(name, version)
        assert mv.tags[registry.TAG_DS] == D2
        assert mv.tags[registry.TAG_MODEL_VERSION] == summary["model_version"]
        assert mv.tags[f"{registry.LAKE_TAG_PREFIX}{EXAMPLES.name}"] == "0"
        run = client.get_run(mv.run_id)
        assert run.data.metrics["valid_auc"] == pytest.approx(summary["metrics"]["valid_auc"])
        artifacts = {a.path for a in client.list_artifacts(mv.run_id, "ranker")}
        assert "ranker/model.ts" in artifacts and "ranker/manifest.json" in artifacts
        assert registry.promote(client, name, version) is None  # no champion before
        assert str(registry.alias_version(client, name, registry.CHAMPION).version) == version


def test_ranked_candidates_keep_columns_and_follow_the_model(spark, trained):
    from jobs.rank_candidates import ranked_candidates

    settings, _, _ = trained
    candidates = Lake(settings).read_spark(spark, "gold/candidates", [D2])
    ranked = ranked_candidates(spark, candidates, settings, D2)
    assert ranked.columns == candidates.columns
    before = {(r["user_id"], r["item_id"]): r for r in candidates.collect()}
    after = {(r["user_id"], r["item_id"]): r for r in ranked.collect()}
    assert set(after) == set(before)
    for key, row in after.items():  # only the score changes
        assert 0.0 < row["score"] < 1.0
        assert row["sources"] == before[key]["sources"] and row["rank"] == before[key]["rank"]
    for user, n_good in (("u1", 3), ("u2", 2)):
        order = sorted((k[1] for k in after if k[0] == user),
                       key=lambda i: -after[(user, i)]["score"])
        assert set(order[:n_good]) == GOOD & set(order), order


def test_fused_scores_mix_the_two_orders(spark, trained):
    from jobs.rank_candidates import ranked_candidates

    settings, _, _ = trained
    candidates = Lake(settings).read_spark(spark, "gold/candidates", [D2])
    alone = {(r["user_id"], r["item_id"]): r["score"]
             for r in ranked_candidates(spark, candidates, settings, D2).collect()}
    half = settings.model_copy(update={"ranker": settings.ranker.model_copy(
        update={"retrieval_weight": 0.5})})
    fused = {(r["user_id"], r["item_id"]): r["score"]
             for r in ranked_candidates(spark, candidates, half, D2).collect()}
    retrieval = {(r["user_id"], r["item_id"]): r["score"] for r in candidates.collect()}

    def norm_rank(scores, user):  # 1 - position / n, best first (no ties here)
        mine = sorted((k for k in scores if k[0] == user), key=lambda k: -scores[k])
        return {k: 1 - i / len(mine) for i, k in enumerate(mine)}

    for user in ("u1", "u2"):
        model_r, retr_r = norm_rank(alone, user), norm_rank(retrieval, user)
        for key in model_r:
            assert fused[key] == pytest.approx(0.5 * model_r[key] + 0.5 * retr_r[key])


def test_fuse_by_hand():
    from jobs.rank_candidates import fuse, user_rank_scores

    users = np.array(["u", "u", "u", "v"], dtype=object)
    items = np.array(["a", "b", "c", "d"], dtype=object)
    model = np.array([0.9, 0.1, 0.5, 0.3])
    retrieval = np.array([1.0, 2.0, 3.0, 0.2])
    # u: model order a, c, b -> 1, 2/3, 1/3; retrieval order c, b, a -> 1, 2/3, 1/3
    np.testing.assert_allclose(fuse(users, items, model, retrieval, 0.5),
                               [(1 + 1 / 3) / 2, (1 / 3 + 2 / 3) / 2, (2 / 3 + 1) / 2, 1.0])
    np.testing.assert_array_equal(fuse(users, items, model, retrieval, 0.0), model)
    np.testing.assert_allclose(fuse(users, items, model, retrieval, 1.0), [1 / 3, 2 / 3, 1, 1])
    # ties go to the smaller item id
    np.testing.assert_allclose(user_rank_scores(np.array(["u", "u"], dtype=object),
                                                np.array(["b", "a"], dtype=object),
                                                np.array([1.0, 1.0])), [0.5, 1.0])
    with pytest.raises(ValueError, match="retrieval weight"):
        fuse(users, items, model, retrieval, 1.5)


def test_without_an_export_candidates_are_unchanged(spark, trained):
    from jobs.rank_candidates import ranked_candidates

    settings, _, _ = trained
    candidates = Lake(settings).read_spark(spark, "gold/candidates", [D2])
    assert ranked_candidates(spark, candidates, settings, "2024-02-01") is candidates


def test_the_fusion_weight_is_chosen_on_validation_users(spark, trained, tmp_path):
    """``retrieval_weight: validation``: training tries the grid on its held-out users,
    keeps the best weight (ties: the larger) in the manifest, and the precompute uses it."""
    from algorithms.ranker.artifact import read_manifest
    from conf.errors import ArtifactError
    from jobs.rank_candidates import export_dir, fusion_weight, ranked_candidates
    from training.nightly import run_train_ds

    settings, _, mlflow_cfg = trained
    auto = settings.model_copy(update={"ranker": settings.ranker.model_copy(update={
        "retrieval_weight": "validation", "retrieval_weight_grid": [1.0, 0.0, 0.5],
        "model_dir": str(tmp_path / "models")})})
    m = run_train_ds(auto, D2, mlflow_cfg, use_mlflow=False)["metrics"]
    tried = {w: m[f"valid_ndcg_at_10_fused_w{w:g}"] for w in (0.0, 0.5, 1.0)}
    best = max(tried.values())
    assert m["valid_retrieval_weight"] == max(w for w, v in tried.items() if v == best)
    assert m["valid_ndcg_at_10_fused"] == best
    # w = 1 is the retrieval order, w = 0 the ranker's: the planted rule makes 0 win
    assert tried[1.0] == pytest.approx(m["valid_ndcg_at_10_retrieval"])
    assert tried[0.0] == pytest.approx(m["valid_ndcg_at_10_ranked"])
    assert tried[0.0] > tried[0.5] and tried[0.0] > tried[1.0]
    assert m["valid_retrieval_weight"] == 0.0
    manifest = read_manifest(export_dir(auto, D2))
    assert fusion_weight(auto, manifest) == m["valid_retrieval_weight"]
    fixed = auto.model_copy(update={"ranker": auto.ranker.model_copy(
        update={"retrieval_weight": 0.25})})
    assert fusion_weight(fixed, manifest) == 0.25
    with pytest.raises(ArtifactError, match="valid_retrieval_weight"):
        fusion_weight(auto, {"metrics": {}})
    # the precompute ranks with the chosen weight: here the model's own order
    candidates = Lake(auto).read_spark(spark, "gold/candidates", [D2])
    scores = {(r["user_id"], r["item_id"]): r["score"]
              for r in ranked_candidates(spark, candidates, auto, D2).collect()}
    for user, n_good in (("u1", 3), ("u2", 2)):
        order = sorted((k[1] for k in scores if k[0] == user), key=lambda i: -scores[(user, i)])
        assert set(order[:n_good]) == GOOD & set(order), order


def test_training_reads_the_earlier_label_windows(trained, tmp_path):
    """``example_windows: 3``: the ranker of D2 trains on the examples of D2 and of D2 - 14
    days (a second window, other users), and skips the missing D2 - 28; a user present in
    both windows has two candidate lists in the validation NDCG, not one merged list."""
    from training.nightly import example_dates, list_keys, run_train_ds

    settings, summary, mlflow_cfg = trained
    earlier = "2024-01-10"
    older = planted_examples(20, seed=2)
    older = older.set_column(older.schema.get_field_index("ds"), "ds",
                             pa.array([earlier] * older.num_rows))
    older = older.set_column(older.schema.get_field_index("source_ds"), "source_ds",
                             pa.array(["2023-12-27"] * older.num_rows))
    lake = Lake(settings)
    lake.overwrite_partitions(EXAMPLES.name, older)  # the other tests train on D2 alone
    three = settings.model_copy(update={"ranker": settings.ranker.model_copy(update={
        "example_windows": 3, "model_dir": str(tmp_path / "models")})})
    assert example_dates(three, D2, lake.partitions(EXAMPLES.name)) == [D2, earlier]
    m = run_train_ds(three, D2, mlflow_cfg, use_mlflow=False)["metrics"]
    assert m["example_windows"] == 2 and summary["metrics"]["example_windows"] == 1
    # 80 user-windows of 6 rows instead of 60; users x0..x19 are in both windows
    assert m["train_rows"] + m["valid_rows"] == 480
    assert m["valid_auc"] > 0.95
    keys = list_keys(pa.concat_tables([planted_examples(1, 0), older.slice(0, 6)]))
    assert len(set(keys)) == 2 and keys[0] != keys[-1]
    assert {k.split("@")[0] for k in keys} == {"x0"}


def test_the_scores_do_not_depend_on_the_row_order(spark, trained):
    """The shuffle hands a scoring task its rows in any order: the scores must not change
    (a rerun of the precompute writes the same table)."""
    from pyspark.sql import functions as F

    from jobs.rank_candidates import export_dir, score_featured
    from jobs.ranker_features import add_features, feature_inputs

    settings, _, _ = trained
    lake = Lake(settings)
    candidates = lake.read_spark(spark, "gold/candidates", [D2])
    featured = add_features(candidates, feature_inputs(spark, lake, settings, D2))

    def scores(frame) -> dict:
        out = score_featured(frame, export_dir(settings, D2), candidates.schema, settings,
                             weight=0.0).toArrow()
        return {(u, i): s for u, i, s in zip(out.column("user_id").to_pylist(),
                                             out.column("item_id").to_pylist(),
                                             out.column("score").to_pylist(), strict=True)}

    shuffled = featured.orderBy(F.rand(3)).repartition(3)
    assert scores(shuffled) == scores(featured)
    assert len(scores(featured)) == candidates.count()
