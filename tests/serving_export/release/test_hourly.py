"""The hourly incremental release on a tiny inline lake: fold-in, refreshed lists, linked
parent files, and the parent chosen from the release history (never whatever is CURRENT)."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs import item_context
from jobs.lake import Lake
from jobs.tables import TS
from serving_export.release.hourly import choose_parent, run
from tests.jobs.test_hourly import BASE_DS, DS, HOUR, ITEM_VECS, ITEMS, hourly_settings

BASE_ID = "2024-01-01-base"
__all__ = ["hourly_settings"]


def _t(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def release_step(spark, settings, ds, hour):
    """The hourly release as the DAG runs it: the parent chosen first, then the build."""
    root = Path(settings.serving.releases_root)
    parent = choose_parent(root, ds, hour)
    assert parent is not None, "no parent"
    return run(spark, settings, ds, hour, parent)


def _silver(rows):
    n = len(rows)
    ts = [_t(r[4]) for r in rows]
    return pa.table({
        "event_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
        "item_id": [r[2] for r in rows], "event_type": [r[3] for r in rows],
        "value": pa.array([r[5] if len(r) > 5 else None for r in rows], pa.float64()),
        "ts": pa.array(ts, TS), "surface": [None] * n, "content_hash": ["h"] * n,
        "event_date": [t.date().isoformat() for t in ts]})


BASE_EVENTS = [
    ("h1", "u1", "i1", "rating", "2024-01-01T12:00:00", 5.0),
    ("h2", "u2", "i4", "rating", "2024-01-01T12:00:00", 4.0),
]
LATER_EVENTS = [  # reach silver after the base release was built
    ("n1", "u1", "i3", "click", "2024-01-02T10:15:00"),   # u1 is refreshed at 11:00
    ("n2", "u2", "i5", "click", "2024-01-02T11:30:00"),   # after 11:00: waits for 12:00
    ("l1", "u3", "i2", "click", "2024-01-01T20:00:00"),   # a late arrival for the base date
]


def _base_release(settings, silver_version):
    from serving_export.release.data import Embeddings, GateVerdict, ReleaseData
    from serving_export.release.publish import publish
    from serving_export.release.writer import write_release

    root = Path(settings.serving.releases_root)
    lists = pa.table({"user_id": ["u1"] * 3 + ["u2"] * 3,
                      "item_id": ["i3", "i2", "i4", "i1", "i2", "i3"],
                      "score": [0.9, 0.8, 0.7, 0.9, 0.8, 0.7]})
    data = ReleaseData(
        ds=BASE_DS, gate=GateVerdict(True, ("ok",)), topn={"home_feed": lists, "email": lists},
        similar_items=pa.table({"item_id": ["i1"], "similar_item_id": ["i2"], "score": [1.0]}),
        popularity=pa.table({"segment": [None] * 3, "item_id": ["i2", "i1", "i6"],
                             "score": [3.0, 2.0, 1.0]}),
        items=pa.table({"item_id": ITEMS, "categories": [["a"], ["a"], ["b"], ["b"], ["c"],
                                                         ["c"]]}),
        users=pa.table({"user_id": ["u1", "u2"], "purchased": [["i6"], []]}),
        user_embeddings=Embeddings(["u1", "u2"], np.array([[1, 0], [0, 1]], np.float32)),
        item_embeddings=Embeddings(ITEMS, ITEM_VECS),
        model_versions={"embeddings": "als-test"}, metrics={"ndcg@10": 0.3},
        table_versions={} if silver_version is None else {"silver/interactions": silver_version})
    write_release(root, BASE_ID, data)
    publish(root, BASE_ID)
    return root


@pytest.fixture
def tiny_lake(hourly_settings):
    lake = Lake(hourly_settings)
    version = lake.overwrite_partitions("silver/interactions", _silver(BASE_EVENTS))
    lake.overwrite_partitions("silver/items", pa.table({
        "item_id": ITEMS, "title": ITEMS, "categories": [[c] for c in "aabbcc"],
        "attributes": pa.array([[]] * 6, pa.map_(pa.string(), pa.string())),
        "available": [True] * 6, "created_at": pa.array([None] * 6, TS),
        "boost": [1.0] * 6, "ds": [BASE_DS] * 6}))
    vec = pa.array(ITEM_VECS.tolist(), pa.list_(pa.float32()))
    lake.overwrite_partitions("gold/item_embeddings", pa.table({
        "id": ITEMS, "vector": vec, "model_version": ["als-test"] * 6, "ds": [BASE_DS] * 6}))
    item_context.run(None, hourly_settings, BASE_DS)
    root = _base_release(hourly_settings, version)
    lake.overwrite_partitions("silver/interactions", _silver(BASE_EVENTS + LATER_EVENTS))
    return lake, root


def _expected_u1_vector(settings):
    """u1's confidences by the matrix formula, then the ALS objective solved by lstsq."""
    end = _t("2024-01-03T00:00:00")  # recency from the end of ds

    def decay(ts):
        return 0.5 ** ((end - _t(ts)).total_seconds() / 86400 / 90.0)

    conf = np.zeros(6)
    conf[0] = 1.0 * (5.0 - 2.5) * decay("2024-01-01T12:00:00")   # the rating of i1
    conf[2] = 1.0 * decay("2024-01-02T10:15:00")                   # the click on i3
    alpha, reg = settings.als.alpha, settings.als.regularization
    c = 1 + alpha * conf
    p = (conf > 0).astype(float)
    a = np.vstack([np.sqrt(c)[:, None] * ITEM_VECS, math.sqrt(reg) * np.eye(2)])
    b = np.concatenate([np.sqrt(c) * p, np.zeros(2)])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.spark
def test_release_step_refreshes_only_changed_users_on_a_linked_parent(
        spark, hourly_settings, tiny_lake):
    from serving_export.release.publish import current_release, read_history
    from serving_export.release.reader import load_release

    _, root = tiny_lake
    report = release_step(spark, hourly_settings, DS, HOUR)
    rid = report["release_id"]
    assert (report["users"], report["new_events"], report["published"]) == (2, 2, True)
    assert current_release(root) == rid and rid.startswith("2024-01-02T11-")
    base, rel = load_release(root / BASE_ID), load_release(root / rid)
    assert rel.manifest["parent"] == BASE_ID and rel.manifest["gate"]["passed"]
    assert rel.manifest["extra"]["hourly"]["cutoff"] == "2024-01-02T11:00:00+00:00"
    assert rel.manifest["metrics"] == {"ndcg@10": 0.3}

    def names(r, user, surface="home_feed"):
        return [r.item_id(int(i)) for i in r.topn(surface, r.user_row(user))[0]]

    # u1 clicked i3 (and rated i1): neither comes back; the list was rebuilt
    for surface in ("home_feed", "email"):
        got = names(rel, "u1", surface)
        assert got and "i3" not in got and "i1" not in got
    assert names(rel, "u1") != names(base, "u1")
    # u3 is new: the late click gives a vector and a list without the clicked item
    assert rel.user_row("u3") >= 0 and rel.user_has_vector[rel.user_row("u3")]
    assert names(rel, "u3") and "i2" not in names(rel, "u3")
    # u2's click came after the cutoff: u2 keeps the nightly list, vector and purchases
    assert names(rel, "u2") == names(base, "u2") == ["i1", "i2", "i3"]
    assert rel.user_vectors[rel.user_row("u2")].tolist() == [0.0, 1.0]
    assert [rel.item_id(int(i)) for i in rel.purchased(rel.user_row("u1"))] == ["i6"]
    # u1's vector is the fold-in of its interactions with the item vectors fixed
    assert rel.user_vectors[rel.user_row("u1")] == pytest.approx(
        _expected_u1_vector(hourly_settings), abs=1e-4)
    # no full copy: the item side is the parent's files, hard-linked
    for rel_path in ("items/vectors.npy", "items/ids.npy", "similar/items.npy",
                     "popular/items.npy"):
        assert os.stat(root / rid / rel_path).st_ino == os.stat(root / BASE_ID / rel_path).st_ino

    # a retry of the hour rebuilds nothing and publishes nothing again
    history = len(read_history(root))
    again = release_step(spark, hourly_settings, DS, HOUR)
    assert again["release_id"] == rid and "topn_rows" not in again
    assert len(read_history(root)) == history

    # the next hour builds on the live hourly release and now refreshes u2 too
    nxt = release_step(spark, hourly_settings, DS, HOUR + 1)
    assert nxt["users"] == 3 and nxt["parent"] == rid and nxt["base"] == BASE_ID
    last = load_release(root / nxt["release_id"])
    assert "i5" not in names(last, "u2") and names(last, "u2") != names(base, "u2")
    assert os.stat(root / nxt["release_id"] / "items/vectors.npy").st_ino == \
        os.stat(root / BASE_ID / "items/vectors.npy").st_ino
    # a rerun of the earlier hour builds on the same parent, finds its release and leaves
    # the later live one alone
    assert choose_parent(root, DS, HOUR) == BASE_ID
    late = release_step(spark, hourly_settings, DS, HOUR)
    assert late["release_id"] == rid and late["published"] is False
    assert current_release(root) == nxt["release_id"]


@pytest.mark.spark
def test_an_hour_without_a_parent_or_new_events_is_skipped(spark, hourly_settings, tiny_lake):
    from serving_export.release.publish import current_release

    lake, root = tiny_lake
    # the nightly base holds the whole of its date: no hour of that date builds on it
    assert choose_parent(root, BASE_DS, 20) is None
    assert "not before this hour" in run(spark, hourly_settings, BASE_DS, 20,
                                         BASE_ID)["skipped"]
    # silver rewritten with the base's events only: nothing new since the base
    lake.replace("silver/interactions", _silver(BASE_EVENTS))
    assert run(spark, hourly_settings, DS, HOUR, BASE_ID)["skipped"] == "no new events"
    assert current_release(root) == BASE_ID


@pytest.mark.spark
def test_the_parent_must_record_the_silver_version_it_was_built_from(spark, hourly_settings):
    from conf.errors import FoldInError, ReleaseNotFound

    _base_release(hourly_settings, None)
    with pytest.raises(FoldInError, match="silver/interactions version"):
        release_step(spark, hourly_settings, DS, HOUR)
    with pytest.raises(ReleaseNotFound, match="nope"):
        run(spark, hourly_settings, DS, HOUR, "nope")
