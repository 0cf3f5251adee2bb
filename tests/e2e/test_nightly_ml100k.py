"""The nightly DAG on real MovieLens 100K, end to end through Airflow."""

from __future__ import annotations

import pytest

from conf import load_settings
from jobs.lake import Lake

from .conftest import BIN, DS, run_checked

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _lake(env):
    return Lake(load_settings(overrides={"lake_root": env["RECPIPE_LAKE_ROOT"]}))


def _snapshot(lake, name, key):
    rows = lake.read_arrow(name).to_pylist()
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in key))


def test_all_ratings_accepted_and_catalog_complete(nightly_run):
    env, _ = nightly_run
    lake = _lake(env)
    assert lake.read_arrow("bronze/events").num_rows == 100_000
    assert lake.read_arrow("silver/interactions").num_rows == 100_000
    assert lake.read_arrow("quarantine/events").num_rows == 0
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
              "gold/training_matrix": ("user_id", "item_id")}
    before = {name: _snapshot(lake, name, key) for name, key in tables.items()}
    run_checked([str(BIN / "recpipe"), "run", "nightly", "--date", DS, "--landing",
                 str(tmp / "landing")], env, tmp / "rerun.log")
    after = {name: _snapshot(lake, name, key) for name, key in tables.items()}
    for name in tables:
        assert after[name] == before[name], name
    assert lake.read_arrow("bronze/events").num_rows == 100_000
