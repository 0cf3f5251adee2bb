"""Offline evaluation on tiny inline tables; every expected number is worked out by hand.

The lake (see :func:`write_day`): items a1..a4 (cluster A) and b1..b4 (cluster B); users
u1..u3 like A, u4..u6 like B, u7 has no training history, u8 only viewed in the holdout.

Good vectors: a1..a4 = (1, 0) * [1, .9, .8, .7]; b1..b4 = (0, 1) * [1, .9, .8, .7]; users
u1..u3 = (1, 0), u4..u6 = (0, 1). Training rows (seen, excluded from model lists):
u1 a1 | u2 a1 a2 | u3 a2 | u4 b1 b2 | u5 b1 b2 | u6 b1 b2 b3.
Holdout truth: u1 {a2, b4}, u2 {a3}, u3 {a1}, u4 {b3}, u5 {b3}, u6 {b4}, u7 {a1}
(u1's view of b4, u2's rating 2 of a4 and u8's view are not positive).

Model lists (ties rank the lower item first): u1 a2 a3 a4 b1 b2 b3 b4 (truth at 1 and 7);
u2 a3 ...; u3 a1 ...; u4 b3 ...; u5 b3 ...; u6 b4 a1 ...; u7 nothing (no vector), or the
popularity list when served with the fallback.
Popularity (training users per item): b1 3, b2 3, a1 2, a2 2, b3 1, then a3 a4 b4 (0).

NDCG@10 with binary gains, IDCG from the truth: one relevant item at rank r gives
1 / log2(r + 1); u1's two hits at ranks 1 and 7 give (1 + 1/3) / (1 + 1/log2 3) = 0.817529.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from conf.gate import EvalSections, GateSettings, MlflowSettings, OfflineEvalSettings
from evaluation.holdout import ItemIndex, build_holdout, padded_lists, positive_events
from evaluation.offline import read_inputs, read_model, score_stage
from evaluation.stage_lists import candidate_lists, model_lists, popularity_lists, topn_lists
from jobs.embeddings import embedding_table
from jobs.lake import Lake
from jobs.tables import EVALUATION

DS = "2024-01-03"
ITEMS = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]
STRENGTH = [1.0, 0.9, 0.8, 0.7]
GOOD_ITEMS = np.array([[s, 0.0] for s in STRENGTH] + [[0.0, s] for s in STRENGTH], np.float32)
SWAPPED_ITEMS = np.concatenate([GOOD_ITEMS[4:], GOOD_ITEMS[:4]])  # A and B vectors swapped
USERS = ["u1", "u2", "u3", "u4", "u5", "u6"]
USER_VECS = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3, np.float32)
TRAIN = [("u1", "a1"), ("u2", "a1"), ("u2", "a2"), ("u3", "a2"), ("u4", "b1"), ("u4", "b2"),
         ("u5", "b1"), ("u5", "b2"), ("u6", "b1"), ("u6", "b2"), ("u6", "b3")]
HOLDOUT = [("u1", "a2", "rating", 5.0), ("u1", "b4", "click", None),
           ("u1", "b4", "view", 30.0), ("u2", "a3", "purchase", None),
           ("u2", "a4", "rating", 2.0), ("u3", "a1", "click", None),
           ("u4", "b3", "click", None), ("u5", "b3", "add_to_cart", None),
           ("u6", "b4", "click", None), ("u7", "a1", "click", None),
           ("u8", "b1", "view", 10.0)]
IDCG2 = 1 + 1 / math.log2(3)


def dcg(rank: int) -> float:
    return 1 / math.log2(rank + 1)


def sections(tmp) -> EvalSections:
    """Small cutoffs for 8 items; MLflow in ``tmp``."""
    return EvalSections(
        OfflineEvalSettings(ks=[1, 2, 5, 10, 100]),
        GateSettings(metrics=["ndcg@10", "recall@2"], coverage_k=2, coverage_floor=0.5),
        MlflowSettings(tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                       artifact_root=str(tmp / "artifacts")))


def _ts(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC)


def _events(rows, day: str, prefix: str) -> pa.Table:
    return pa.Table.from_pylist([
        {"event_id": f"{prefix}{i}", "user_id": u, "item_id": it, "event_type": t,
         "value": v, "ts": _ts(day), "surface": "home_feed", "content_hash": f"h{prefix}{i}",
         "event_date": day}
        for i, (u, it, t, v) in enumerate(rows)])


def write_day(lake: Lake, ds: str, item_vectors: np.ndarray, version: str,
              with_stages: bool = False) -> None:
    """The inputs of one date: training events (the day before), holdout events (``ds``),
    the catalogue, the training matrix and the embeddings (optionally candidates, top-N)."""
    day_before = date.fromisoformat(ds) - timedelta(days=1)
    train_events = [(u, i, "click", None) for u, i in TRAIN]
    lake.overwrite_partitions("silver/interactions",
                              _events(train_events, day_before.isoformat(), f"t{ds}-"))
    lake.overwrite_partitions("silver/interactions", _events(HOLDOUT, ds, f"h{ds}-"))
    lake.overwrite_partitions("silver/items", pa.Table.from_pylist([
        {"item_id": i, "title": i, "categories": [i[0]], "attributes": None, "available": True,
         "created_at": None, "boost": 1.0, "ds": ds} for i in ITEMS]))
    lake.overwrite_partitions("gold/training_matrix", pa.Table.from_pylist([
        {"user_id": u, "item_id": i, "confidence": 1.0, "n_events": 1,
         "last_ts": _ts(day_before.isoformat()), "ds": ds} for u, i in TRAIN]))
    lake.overwrite_partitions("gold/user_embeddings",
                              embedding_table(USERS, USER_VECS, version, ds))
    lake.overwrite_partitions("gold/item_embeddings",
                              embedding_table(ITEMS, item_vectors, version, ds))
    if with_stages:
        write_stages(lake, ds)


CANDIDATES = [  # user, item, rank, ann, content, session, popular
    ("u1", "b4", 1, 0.1, None, None, None),
    ("u1", "a2", 2, 0.9, None, None, None),
    ("u1", "a3", 3, None, 0.5, None, None),
    ("u4", "b3", 1, None, None, None, 1.0),
    ("u9", "a1", 1, 0.5, None, None, None),  # not an evaluated user
]
TOPN = [("u1", 1, "a3", "home_feed"), ("u1", 2, "a2", "home_feed"),
        ("u4", 1, "b3", "email")]


def write_stages(lake: Lake, ds: str) -> None:
    lake.overwrite_partitions("gold/candidates", pa.Table.from_pylist([
        {"user_id": u, "item_id": i, "score": 1.0 / r, "ann_score": a, "content_score": c,
         "session_score": s, "popular_score": p,
         "sources": [n for n, v in zip(("ann", "content", "session", "popular"),
                                       (a, c, s, p), strict=True) if v is not None],
         "rank": r, "ds": ds} for u, i, r, a, c, s, p in CANDIDATES]))
    topn = pa.Table.from_pylist([
        {"user_id": u, "rank": r, "item_id": i, "score": 1.0 / r, "sources": ["ann"],
         "surface": s, "ds": ds} for u, r, i, s in TOPN])
    write_deltalake(lake.path("gold/topn"), topn, partition_by=["surface", "ds"],
                    mode="overwrite")


@pytest.fixture
def lake(settings):
    lake = Lake(settings)
    write_day(lake, DS, GOOD_ITEMS, "als-good", with_stages=True)
    return lake


@pytest.fixture
def holdout(lake, settings):
    inputs = read_inputs(lake, settings, DS)
    _, model = read_model(lake, DS)
    return build_holdout(inputs.events, inputs.train,
                         [*inputs.catalogue.to_pylist(), *model.item_ids],
                         OfflineEvalSettings(), seed=1)


def _value(rows, metric, k, slice_="all"):
    (row,) = [r for r in rows if (r["metric"], r["k"], r["slice"]) == (metric, k, slice_)]
    return row["value"], row["users"]


# -- the holdout ----------------------------------------------------------------------------
def test_positive_events_follow_types_and_min_rating():
    got = positive_events(_events(HOLDOUT, DS, "x"), OfflineEvalSettings())
    pairs = sorted(zip(got["user_id"].to_pylist(), got["item_id"].to_pylist(), strict=True))
    assert pairs == [("u1", "a2"), ("u1", "b4"), ("u2", "a3"), ("u3", "a1"), ("u4", "b3"),
                     ("u5", "b3"), ("u6", "b4"), ("u7", "a1")]


def test_holdout_truth_seen_and_slices(holdout):
    assert list(holdout.user_ids) == ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]
    assert list(holdout.items.ids) == ITEMS and holdout.items.n_catalogue == 8
    truth = {u: sorted(holdout.items.ids[holdout.truth[i].indices])
             for i, u in enumerate(holdout.user_ids)}
    assert truth == {"u1": ["a2", "b4"], "u2": ["a3"], "u3": ["a1"], "u4": ["b3"],
                     "u5": ["b3"], "u6": ["b4"], "u7": ["a1"]}
    assert list(holdout.train_items) == [1, 2, 1, 2, 2, 3, 0]
    assert list(holdout.cold_users) == [False] * 6 + [True]
    # training items per training user [1, 2, 1, 2, 2, 3]: 0.9 quantile = 2 + 0.5 * 1 = 2.5
    assert holdout.heavy_threshold == pytest.approx(2.5)
    assert list(holdout.heavy_users) == [False] * 5 + [True, False]
    assert [i for i, c in zip(ITEMS, holdout.cold_items, strict=True) if c] == ["a3", "a4", "b4"]
    assert list(holdout.item_users) == [2, 2, 0, 0, 3, 3, 1, 0]


def test_user_sample_is_seeded_and_sorted(lake, settings):
    inputs = read_inputs(lake, settings, DS)
    cfg = OfflineEvalSettings(max_users=3)
    a = build_holdout(inputs.events, inputs.train, ITEMS, cfg, seed=7)
    b = build_holdout(inputs.events, inputs.train, ITEMS, cfg, seed=7)
    assert list(a.user_ids) == list(b.user_ids) == sorted(a.user_ids) and a.n_users == 3
    assert a.truth.shape == (3, 8)


def test_padded_lists_order_dedupe_and_width():
    users = np.array([1, 0, 1, 1, 0, -1, 1])
    items = np.array([5, 2, 3, 5, 7, 1, 9])
    key = np.array([2.0, 1.0, 1.0, 0.5, 1.0, 0.0, 9.0])
    got = padded_lists(users, items, key, n_users=3, width=2)
    # user 0: items 2 and 7 tie on key 1.0 -> lower item first; user 1: 5 (best key 0.5), 3
    assert got.tolist() == [[2, 7], [5, 3], [-1, -1]]


def test_item_index_puts_the_catalogue_first():
    index = ItemIndex(["c", "a"], ["z", "a", "b"])
    assert list(index.ids) == ["a", "c", "b", "z"] and index.n_catalogue == 2
    assert index.rows(["z", "a", "nope"]).tolist() == [3, 0, -1]


# -- stage lists and metrics ----------------------------------------------------------------
def test_model_and_popularity_lists_exclude_training_items(lake, holdout):
    _, model = read_model(lake, DS)
    ids = holdout.items.ids
    recs = model_lists(model, holdout, 8)
    assert [ids[r] for r in recs[0] if r >= 0] == ["a2", "a3", "a4", "b1", "b2", "b3", "b4"]
    assert [ids[r] for r in recs[5] if r >= 0] == ["b4", "a1", "a2", "a3", "a4"]
    assert (recs[6] == -1).all()  # u7 has no vector
    pop = popularity_lists(holdout, 8)
    assert [ids[r] for r in pop[0] if r >= 0] == ["b1", "b2", "a2", "b3", "a3", "a4", "b4"]
    assert [ids[r] for r in pop[6] if r >= 0] == ["b1", "b2", "a1", "a2", "b3", "a3", "a4",
                                                  "b4"]


def test_model_metrics_by_hand(lake, holdout):
    _, model = read_model(lake, DS)
    alone = score_stage("model", model_lists(model, holdout, 100), holdout, [1, 2, 10, 100])
    u1 = (1 + dcg(7)) / IDCG2
    assert _value(alone, "ndcg", 10) == (pytest.approx((u1 + 5) / 7), 7)
    assert _value(alone, "recall", 2)[0] == pytest.approx(5.5 / 7)
    assert _value(alone, "recall", 100)[0] == pytest.approx(6 / 7)
    assert _value(alone, "ndcg", 10, "cold_users") == (0.0, 1)
    assert _value(alone, "ndcg", 10, "heavy_users") == (pytest.approx(1.0), 1)
    # cold items a3 a4 b4: truth u1 {b4} at rank 7, u2 {a3} at 1, u6 {b4} at 1
    assert _value(alone, "ndcg", 10, "cold_items") == (pytest.approx((dcg(7) + 2) / 3), 3)
    # top-1 items: a2 a3 a1 b3 b3 b4 -> 5 of 8 catalogue items
    assert _value(alone, "coverage", 1) == (pytest.approx(5 / 8), 7)
    # served: u7 (no vector) gets the popularity list b1 b2 a1 ..., truth a1 at rank 3
    popular = popularity_lists(holdout, 100)
    served = score_stage("model", model_lists(model, holdout, 100, fallback=popular),
                         holdout, [1, 10, 100])
    assert _value(served, "ndcg", 10)[0] == pytest.approx((u1 + 5 + dcg(3)) / 7)
    assert _value(served, "recall", 100)[0] == pytest.approx(1.0)
    assert _value(served, "ndcg", 10, "cold_users") == (pytest.approx(0.5), 1)
    assert _value(served, "coverage", 1)[0] == pytest.approx(6 / 8)  # b1 joins


def test_popularity_metrics_by_hand(holdout):
    rows = score_stage("popularity", popularity_lists(holdout, 100), holdout, [10])
    # ranks of the truth: u1 a2 3 & b4 7, u2 a3 4, u3 a1 3, u4 b3 3, u5 b3 3, u6 b4 5, u7 a1 3
    per_user = [(dcg(3) + dcg(7)) / IDCG2, dcg(4), dcg(3), dcg(3), dcg(3), dcg(5), dcg(3)]
    assert _value(rows, "ndcg", 10)[0] == pytest.approx(sum(per_user) / 7)
    assert _value(rows, "ndcg", 10, "cold_users")[0] == pytest.approx(0.5)


def test_candidate_and_topn_stages_by_hand(lake, holdout):
    from evaluation.stage_lists import read_partition

    users = list(holdout.user_ids)
    cand = read_partition(lake, "gold/candidates", DS,
                          ["user_id", "item_id", "rank", "ann_score", "content_score",
                           "session_score", "popular_score"], users)
    assert sorted(set(cand["user_id"].to_pylist())) == ["u1", "u4"]  # u9 filtered out
    lists = candidate_lists(cand, holdout, 5)
    ids = holdout.items.ids
    assert [ids[r] for r in lists["merged"][0] if r >= 0] == ["b4", "a2", "a3"]
    assert [ids[r] for r in lists["strategy/ann"][0] if r >= 0] == ["a2", "b4"]
    assert [ids[r] for r in lists["strategy/content"][0] if r >= 0] == ["a3"]
    assert (lists["strategy/session"] == -1).all()
    merged = score_stage("merged", lists["merged"], holdout, [1, 10])
    assert _value(merged, "ndcg", 10)[0] == pytest.approx(2 / 7)  # u1 and u4 perfect
    assert _value(merged, "recall", 1)[0] == pytest.approx(1.5 / 7)
    content = score_stage("strategy/content", lists["strategy/content"], holdout, [10])
    assert _value(content, "ndcg", 10)[0] == 0.0
    top = read_partition(lake, "gold/topn", DS, ["user_id", "item_id", "rank", "surface"],
                         users)
    surfaces = topn_lists(top, holdout, 5)
    assert set(surfaces) == {"topn/home_feed", "topn/email"}
    home = score_stage("topn/home_feed", surfaces["topn/home_feed"], holdout, [10])
    assert _value(home, "ndcg", 10)[0] == pytest.approx(dcg(2) / IDCG2 / 7)  # u1: a2 at 2


def test_empty_slice_scores_nan_with_zero_users(lake, settings):
    inputs = read_inputs(lake, settings, DS)
    events = inputs.events.filter(pa.compute.not_equal(inputs.events["user_id"], "u7"))
    holdout = build_holdout(events, inputs.train, ITEMS, OfflineEvalSettings(), seed=1)
    rows = score_stage("popularity", popularity_lists(holdout, 10), holdout, [10])
    value, users = _value(rows, "ndcg", 10, "cold_users")
    assert math.isnan(value) and users == 0


# -- the job, with a real MLflow ------------------------------------------------------------
def test_run_writes_rows_logs_the_run_and_registers_the_model(lake, settings, tmp_path):
    import mlflow

    from evaluation import offline, registry

    cfg = sections(tmp_path)
    out = offline.evaluate(settings, DS, cfg)
    assert out["model_version"] == "als-good" and out["users"] == 7
    assert out["headline"]["model"]["ndcg@10"] == pytest.approx(
        ((1 + dcg(7)) / IDCG2 + 5 + dcg(3)) / 7)
    rows = lake.read_arrow(EVALUATION.name, [DS]).to_pylist()
    stages = {r["stage"] for r in rows}
    assert stages == {"model", "popularity", "merged", "strategy/ann", "strategy/content",
                      "strategy/session", "strategy/popular", "topn/home_feed", "topn/email"}
    assert {r["run_id"] for r in rows} == {out["run_id"]}
    with registry.tracking(cfg.mlflow) as client:
        run = client.get_run(out["run_id"])
        assert run.data.params["holdout_first"] == DS
        assert run.data.params["users"] == "7"
        assert run.data.metrics["model/all/ndcg_at_10"] == pytest.approx(
            out["headline"]["model"]["ndcg@10"])
        assert run.data.metrics["users/cold_users"] == 1
        artifacts = {a.path for a in client.list_artifacts(out["run_id"], "report")}
        assert "report/index.html" in artifacts and "report/recall_curves.png" in artifacts
        version = registry.find_version(client, cfg.mlflow.embeddings_model, DS)
        assert out["registered"] == f"{cfg.mlflow.embeddings_model}/{version.version}"
        assert version.run_id == out["run_id"]
        assert version.tags[registry.TAG_MODEL_VERSION] == "als-good"
        assert version.tags["lake.gold/training_matrix"] == str(
            lake.version("gold/training_matrix"))
        # a rerun reuses the run and the registered version
        again = offline.evaluate(settings, DS, cfg)
        assert again["run_id"] == out["run_id"] and again["registered"] == out["registered"]
        assert len(client.search_model_versions(
            f"name = '{cfg.mlflow.embeddings_model}'")) == 1
    assert mlflow.get_tracking_uri() != cfg.mlflow.resolved_tracking_uri()  # restored


def test_run_without_holdout_events_is_empty_input(settings, tmp_path):
    from conf.errors import EmptyInput
    from evaluation import offline

    lake = Lake(settings)
    write_day(lake, DS, GOOD_ITEMS, "als-good")
    lake.overwrite_partitions("silver/interactions", _events(
        [("u1", "a2", "view", 3.0)], DS, "only-view"))
    with pytest.raises(EmptyInput, match="no positive holdout event"):
        offline.evaluate(settings, DS, sections(tmp_path))


def test_sample_users_sorts_distinct_ids_and_samples_in_arrow() -> None:
    import pyarrow as pa

    from evaluation.holdout import sample_users

    ids = ["u3", "u1", "u2", "u1", "u10"]
    assert sample_users(ids, 0, seed=0) == ["u1", "u10", "u2", "u3"]
    chunked = pa.chunked_array([pa.array(ids[:2]), pa.array(ids[2:])])
    assert sample_users(chunked, 0, seed=0) == ["u1", "u10", "u2", "u3"]
    picked = sample_users(chunked, 2, seed=7)
    assert len(picked) == 2 and picked == sorted(picked) and set(picked) <= set(ids)
    assert sample_users(ids, 2, seed=7) == picked


def test_a_recommended_item_the_user_said_no_to_counts_against_the_list():
    from evaluation.offline import said_no_share, score_stage

    events = pa.Table.from_pylist([
        {"user_id": "u1", "item_id": "a2", "event_type": "click", "value": None},
        {"user_id": "u1", "item_id": "a3", "event_type": "hide", "value": None},
        {"user_id": "u2", "item_id": "a1", "event_type": "click", "value": None},
        {"user_id": "u2", "item_id": "b1", "event_type": "dislike", "value": None},
        {"user_id": "u2", "item_id": "b2", "event_type": "not_interested", "value": None}])
    train = pa.table({"user_id": ["u1"], "item_id": ["a1"]})
    holdout = build_holdout(events, train, ITEMS, OfflineEvalSettings(), seed=1)
    rows = holdout.items.rows
    # u1 is shown a3 (hidden) and a2; u2 is shown b1 (disliked), a1 and b3
    recs = np.array([[*rows(["a3", "a2"]), -1], rows(["b1", "a1", "b3"])], dtype=np.int64)
    assert said_no_share(recs, holdout, 3) == pytest.approx(2 / 6)
    assert said_no_share(recs, holdout, 1) == pytest.approx(2 / 2)
    clean = np.array([[*rows(["a2", "a4"]), -1], rows(["a1", "b3", "b4"])], dtype=np.int64)
    assert said_no_share(clean, holdout, 3) == 0.0
    row = next(r for r in score_stage("model", recs, holdout, [3]) if r["metric"] == "said_no")
    assert row["value"] == pytest.approx(1 / 3) and row["users"] == 2
