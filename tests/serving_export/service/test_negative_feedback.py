"""Negative feedback in the service: a ``hide`` suppressed in the very next answer, and the
release's per-user block list applied on every path (precomputed, popular, similar blend),
whatever the request's filters."""

from __future__ import annotations

import json

import httpx
import pyarrow as pa
import pytest

from bench.release_synth import tiny_release_data
from bench.server_thread import ServerThread
from serving_export.release.publish import publish
from serving_export.release.reader import Release
from serving_export.release.writer import write_release
from serving_export.service import create_app
from tests.serving_export.service.test_service import KEY, ids, settings_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("negative")
    settings = settings_for(tmp_path)
    data = tiny_release_data()
    data.users = pa.table({
        "user_id": ["alice", "carol", "bob"], "segment": ["young", "young", None],
        "purchased": [["i2"], [], []],
        "blocked": [["i1", "i8"], ["i8"], ["i5"]]})
    write_release(settings.releases_root, "r1", data)
    publish(settings.releases_root, "r1")
    with ServerThread(create_app(settings)) as srv:
        yield srv


def get(server, path, **params):
    return httpx.get(server.url + path, params=params, timeout=5).json()


def test_the_release_records_each_users_block_list(server):
    rel = Release.load(tiny_path(server), verify=False)
    blocked = {u: sorted(rel.item_id(r) for r in rel.blocked_rows(rel.user_row(u)))
               for u in ("alice", "bob", "carol")}
    assert blocked == {"alice": ["i1", "i8"], "bob": ["i5"], "carol": ["i8"]}


def tiny_path(server):
    state = server.server.config.app.state.service
    return state.release.path


def test_blocked_items_never_show_whatever_the_filters(server):
    # alice's list: i1 (blocked), i2 (bought), i3, i4 (unavailable), i5, i6
    assert ids(get(server, "/recommendations/users/alice", n=3)) == ["i3", "i5", "i6"]
    keep_all = json.dumps({"exclude_purchased": False, "exclude_recent": False,
                           "available_only": False})
    assert ids(get(server, "/recommendations/users/alice", n=3, filters=keep_all)) == [
        "i2", "i3", "i4"]
    # carol has no list: her segment's popular list is i8 (blocked), i6; then overall i7
    carol = get(server, "/recommendations/users/carol", n=2)
    assert carol["source"] == "popular" and ids(carol) == ["i6", "i7"]


def test_a_hide_is_suppressed_in_the_next_answer_and_blocks_feed_no_blend(server):
    r = httpx.post(server.url + "/events/interactions", headers={"X-API-Key": KEY},
                   json={"events": [{"user_id": "alice", "item_id": "i3",
                                     "event_type": "hide"}]})
    assert r.status_code == 202, r.text
    assert "i3" not in ids(get(server, "/recommendations/users/alice", n=3))
    # not a filter: an app that asks to keep recent items still never sees it
    keep = json.dumps({"exclude_recent": False, "exclude_purchased": False})
    assert ids(get(server, "/recommendations/users/alice", n=3, filters=keep)) == [
        "i2", "i5", "i6"]
    # bob clicks i1: the blend draws on i1's similar items i5 (bob blocked it), i8, i2
    r = httpx.post(server.url + "/events/interactions", headers={"X-API-Key": KEY},
                   json={"events": [{"user_id": "bob", "item_id": "i1",
                                     "event_type": "click"}]})
    assert r.status_code == 202
    body = get(server, "/recommendations/users/bob", n=5)
    assert "i5" not in ids(body) and "i1" not in ids(body)
    assert [i["item_id"] for i in body["items"] if i["source"] == "similar"] == ["i8"]
