"""The nightly DAG on real MovieLens 100K, end to end through Airflow."""

from __future__ import annotations

import numpy as np
import pytest

from conf import load_settings
from jobs.lake import Lake

from .conftest import BIN, DS, FIRST_DS, run_checked

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _lake(env):
    return Lake(load_settings(overrides={"lake_root": env["RECPIPE_LAKE_ROOT"]}))


def _snapshot(lake, name, key):
    # every partition of the table: the rows of one key differ between dates, so the
    # partition is part of the order (files are listed in no fixed order)
    rows = lake.read_arrow(name).to_pylist()
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in ("ds", *key)))


def test_all_ratings_accepted_and_catalog_complete(nightly_run):
    env, _ = nightly_run
    lake = _lake(env)
    # each night appends the landing file as received; silver holds every rating once
    assert lake.read_arrow("bronze/events", [DS]).num_rows == 100_000
    assert lake.read_arrow("silver/interactions").num_rows == 100_000
    assert lake.read_arrow("quarantine/events", [DS]).num_rows == 0
    # on the first night, ratings dated after it (ds + 1 day) are future events: each is
    # quarantined with its reason, none dropped silently
    early = lake.read_arrow("quarantine/events", [FIRST_DS]).to_pandas()
    assert set(early.reason) == {"ts_out_of_range"}
    assert (early.ts > "1998-04-10").all() and len(early) > 1000
    items = lake.read_arrow("silver/items", [DS])
    users = lake.read_arrow("silver/users", [DS])
    assert items.num_rows == 1682 and len(set(items.column("item_id").to_pylist())) == 1682
    assert users.num_rows == 943
    toy_story = [r for r in items.to_pylist() if r["item_id"] == "1"][0]
    assert "Toy Story" in toy_story["title"] and "Animation" in toy_story["categories"]
    matrix = lake.read_arrow("gold/training_matrix", [DS])
    # ratings of 1 and 2 are negative evidence and leave the matrix; everything else is in
    assert 60_000 < matrix.num_rows < 100_000
    assert set(matrix.column("ds").to_pylist()) == {DS}


def test_rerun_of_the_same_date_gives_identical_tables(nightly_run):
    env, tmp = nightly_run
    lake = _lake(env)
    tables = {"silver/interactions": ("event_id",), "silver/items": ("item_id",),
              "gold/training_matrix": ("user_id", "item_id"),
              "gold/popularity": ("segment", "item_id"),
              "gold/covisitation": ("item_id", "neighbor_id"),
              "gold/candidates": ("user_id", "item_id"),
              "gold/topn": ("surface", "user_id", "rank")}
    before = {name: _snapshot(lake, name, key) for name, key in tables.items()}
    # every task again up to the candidates, then the precompute with the same ranker
    # export (retraining the ranker on 2 CPU threads is not bit-reproducible)
    run_checked([str(BIN / "recpipe"), "run", "nightly", "--date", DS, "--landing",
                 str(tmp / "landing"), "--from-task", "ingest_events", "--to-task",
                 "candidates"], env, tmp / "rerun.log")
    run_checked([str(BIN / "recpipe"), "topn", "--ds", DS], env, tmp / "rerun-topn.log")
    after = {name: _snapshot(lake, name, key) for name, key in tables.items()}
    for name in tables:
        assert after[name] == before[name], name
    assert lake.read_arrow("bronze/events", [DS]).num_rows == 100_000


def test_candidates_and_surfaces_follow_their_contracts(nightly_run):
    env, _ = nightly_run
    lake = _lake(env)
    cands = lake.read_arrow("gold/candidates", [DS]).to_pandas()
    assert cands.user_id.nunique() == 943
    assert cands.groupby("user_id").size().max() <= 1000
    assert not cands.duplicated(["user_id", "item_id"]).any()
    strategies = {"ann", "content", "session", "popular"}
    assert set().union(*map(set, cands.sources)) == strategies
    topn = lake.read_arrow("gold/topn", [DS]).to_pandas()
    assert set(topn.surface) == {"home_feed", "email"}
    home = topn[topn.surface == "home_feed"]
    email = topn[topn.surface == "email"]
    first = home[home["rank"] <= 10].groupby("user_id").item_id.apply(set)
    clash = email.apply(lambda r: r.item_id in first.get(r.user_id, set()), axis=1)
    assert not clash.any()  # the email never repeats the home feed's first 10 slots
    rated = lake.read_arrow("silver/interactions").to_pandas()
    trained = rated[rated.event_date <= "1998-04-08"]  # DS minus the 14 held-out days
    seen = set(zip(trained.user_id, trained.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(home.user_id, home.item_id, strict=True))


def test_cold_items_get_and_appear_in_similar_items(nightly_run):
    env, _ = nightly_run
    lake = _lake(env)
    trained = set(lake.read_arrow("gold/training_matrix", [DS]).column("item_id").to_pylist())
    catalogue = set(lake.read_arrow("silver/items", [DS]).column("item_id").to_pylist())
    cold = catalogue - trained
    assert len(cold) > 50
    similar = lake.read_arrow("gold/similar_items", [DS]).to_pandas()
    assert cold & set(similar.item_id)  # cold items have lists (content vectors)
    assert cold & set(similar.similar_item_id)  # and are found as similar items
    star_wars = similar[similar.item_id == "50"].sort_values("rank").similar_item_id
    assert "181" in list(star_wars[:3])  # Return of the Jedi


def test_gate_verdict_release_and_registry(nightly_run):
    import json as _json

    from serving_export.release.publish import current_release
    from serving_export.release.reader import load_release

    env, tmp = nightly_run
    lake = _lake(env)
    evaluation = lake.read_arrow("gold/evaluation", [DS]).to_pandas()
    headline = evaluation[(evaluation.slice == "all") & (evaluation.metric == "ndcg")
                          & (evaluation.k == 10)].set_index("stage").value
    assert {"model", "popularity", "merged", "topn/home_feed"} <= set(headline.index)
    current = current_release(tmp / "releases")
    assert current is not None and current.startswith(DS)
    manifest = _json.loads((tmp / "releases" / current / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True
    release = load_release(tmp / "releases" / current)
    assert release is not None
    # the registry names as champion exactly the models the live release serves: the
    # versions registered for DS (the embeddings tagged with the served model version)
    from evaluation import registry

    cfg = load_settings(environ=env).mlflow
    with registry.tracking(cfg) as client:
        for name in (cfg.embeddings_model, cfg.ranker_model):
            champion = registry.alias_version(client, name, registry.CHAMPION)
            registered = registry.find_version(client, name, DS)
            assert champion is not None and registered is not None, name
            assert str(champion.version) == str(registered.version), name
            assert champion.tags[registry.TAG_DS] == DS
        embeddings = registry.alias_version(client, cfg.embeddings_model, registry.CHAMPION)
        assert embeddings.tags[registry.TAG_MODEL_VERSION] == \
            manifest["model_versions"]["embeddings"]


def test_first_night_publishes_only_if_the_gate_passed(nightly_run):
    from evaluation.gate import load_verdict
    from serving_export.release.publish import list_releases, read_history

    env, tmp = nightly_run
    first_passed, reasons, _ = load_verdict(_lake(env), FIRST_DS)
    outcome = int((tmp / "first_outcome").read_text())
    assert (outcome == 0) == first_passed, reasons
    first_releases = [r for r in list_releases(tmp / "releases") if r.ds == FIRST_DS]
    published = {e["release_id"] for e in read_history(tmp / "releases")}
    if first_passed:
        assert any(r.release_id in published for r in first_releases)
    else:
        assert reasons  # the verdict says why
        assert not any(r.release_id in published for r in first_releases)


def test_release_holds_content_vectors_and_answers_from_its_shards(nightly_run):
    import json as _json

    from serving_export.release.publish import current_release
    from serving_export.release.reader import load_release

    _, tmp = nightly_run
    current = current_release(tmp / "releases")
    manifest = _json.loads((tmp / "releases" / current / "manifest.json").read_text())
    release = load_release(tmp / "releases" / current)
    counts = manifest["extra"]["item_vectors"]
    assert counts["content"] > 50  # cold items: content-predicted vectors
    assert int(release.item_has_vector.sum()) == counts["collaborative"] + counts["content"]
    assert release.ann is not None and release.ann.ntotal == int(release.item_has_vector.sum())
    # the shards' ids are the release's item rows: ANN hits match brute force on its vectors
    users = np.flatnonzero(release.user_has_vector)[:50]
    vectors = np.where(release.item_has_vector[:, None], release.item_vectors, 0)
    hits = 0
    for row in users.tolist():
        query = np.asarray(release.user_vectors[row])
        found, _ = release.ann_search(query, 10)
        truth = np.argsort(-(vectors @ query), kind="stable")[:10]
        hits += len(set(found.tolist()) & set(truth.tolist()))
    assert hits / (10 * len(users)) >= 0.9
