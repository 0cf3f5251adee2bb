"""``recpipe load-catalog``: catalogue rows checked, bad ones quarantined with a reason, and a
reload of one kind leaves the other kind's rejects of that day in place."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conf.errors import SourceError
from jobs import catalog
from jobs.lake import Lake
from jobs.tables import QUARANTINE_CATALOG, SILVER_ITEMS, SILVER_USERS

DS = "2024-03-01"


def _write(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def files(tmp_path):
    items = _write(tmp_path / "items.parquet", item_id=["i1", "i2", "i2", " ", "i3"],
                   title=["a", "b", "b again", "blank", "c"],
                   boost=[1.0, 2.0, 2.0, 1.0, -1.0])
    users = _write(tmp_path / "users.parquet", user_id=["u1", None, "u2", "u1"])
    return items, users


def _rejects(lake: Lake) -> list[tuple[str, str | None, str]]:
    rows = lake.read_arrow(QUARANTINE_CATALOG.name, [DS]).to_pylist()
    return sorted((r["kind"], r["id"] or "", r["reason"]) for r in rows)


def test_bad_rows_are_quarantined_with_their_reason(settings, files):
    items, users = files
    report = catalog.load(settings, DS, items, users)
    assert report["items"] == {"accepted": 2, "quarantined": 3}
    assert report["users"] == {"accepted": 2, "quarantined": 2}
    lake = Lake(settings)
    assert sorted(lake.read_arrow(SILVER_ITEMS.name, [DS]).column("item_id").to_pylist()) \
        == ["i1", "i2"]
    assert sorted(lake.read_arrow(SILVER_USERS.name, [DS]).column("user_id").to_pylist()) \
        == ["u1", "u2"]
    assert _rejects(lake) == [
        ("item", " ", "missing_item_id"), ("item", "i2", "duplicate_item_id"),
        ("item", "i3", "bad_boost"), ("user", "", "missing_user_id"),
        ("user", "u1", "duplicate_user_id")]


def test_reloading_one_kind_keeps_the_other_kinds_rejects(settings, files, tmp_path):
    items, users = files
    catalog.load(settings, DS, items, users)
    fixed = _write(tmp_path / "users-fixed.parquet", user_id=["u1", "u2", "u3"])
    catalog.load(settings, DS, None, fixed)
    lake = Lake(settings)
    assert _rejects(lake) == [("item", " ", "missing_item_id"),
                              ("item", "i2", "duplicate_item_id"), ("item", "i3", "bad_boost")]
    assert sorted(lake.read_arrow(SILVER_USERS.name, [DS]).column("user_id").to_pylist()) \
        == ["u1", "u2", "u3"]
    # rerunning the same load changes nothing
    catalog.load(settings, DS, None, fixed)
    assert len(_rejects(lake)) == 3


def test_missing_or_unreadable_files_are_named(settings, tmp_path):
    with pytest.raises(SourceError, match="items file not found: .*nope.parquet"):
        catalog.load(settings, DS, tmp_path / "nope.parquet", None)
    bad = tmp_path / "users.parquet"
    bad.write_text("not parquet")
    with pytest.raises(SourceError, match="cannot read users file"):
        catalog.load(settings, DS, None, bad)
    no_id = _write(tmp_path / "items.parquet", title=["x"])
    with pytest.raises(SourceError, match="lacks its id column 'item_id'"):
        catalog.load(settings, DS, no_id, None)
