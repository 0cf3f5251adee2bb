"""The service's fast paths give the answers of the general ones: query parsing, list-head
answers, their rendering and cache, and the one-write HTTP protocol."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
from starlette.datastructures import QueryParams

from bench.release_synth import synthetic_release_data, tiny_release_data
from bench.server_thread import ServerThread
from serving_export.release.publish import publish
from serving_export.release.reader import Release
from serving_export.release.writer import write_release
from serving_export.service import answers, create_app
from serving_export.service.http import HeldHeadTransport
from serving_export.service.lookups import query_args
from serving_export.service.models import Filters
from serving_export.service.realtime import EMPTY, Recent
from serving_export.service.recommend import Blend, ListHead, recommend_user
from tests.serving_export.service.test_service import settings_for


@pytest.mark.parametrize("raw", [
    b"", b"n=20", b"surface=email&n=5", b"n=1&n=2", b"n=", b"n", b"&&n=3&", b"a=b=c",
    b"filters=%7B%22available_only%22%3Afalse%7D&n=4", b"q=a+b", b"x=%zz", b"caf\xc3\xa9=1",
])
def test_query_args_decode_like_starlette(raw):
    expected = {k: QueryParams(raw).get(k) for k in QueryParams(raw)}
    assert query_args(raw) == expected


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    data = synthetic_release_data(60, 400, topn=40, dim=8, seed=3)
    return Release.load(write_release(tmp_path_factory.mktemp("rel"), "syn", data))


def reference_answer(rel, surface, row, n, excluded):
    """The walk the answer must equal: the list in order, without excluded or unavailable
    items, first n."""
    items, scores, masks = rel.topn(surface, row)
    out = []
    for item, score, mask in zip(items.tolist(), scores.tolist(), masks.tolist(), strict=True):
        if item in excluded or not rel.available[item]:
            continue
        out.append((item, score, "personalized", mask))
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("n", [1, 5, 20])
def test_list_head_answers_equal_the_walk_over_the_list(synthetic, n):
    rel = synthetic
    assert not rel.all_available  # some users' heads hold unavailable items
    heads = 0
    for row in range(len(rel.user_ids)):
        user = rel.user_ids[row].decode()
        for surface in rel.surfaces:
            source, entries, backfilled = recommend_user(rel, surface, user, n, None, EMPTY,
                                                         Blend())
            expected = reference_answer(rel, surface, row, n,
                                        set(rel.purchased(row).tolist()))
            assert (source, list(entries), backfilled) == ("personalized", expected, False)
            heads += type(entries) is ListHead
    assert heads == 2 * len(rel.user_ids)  # every answer took the fast path here


def test_list_head_rendering_and_cache_equal_the_general_rendering(synthetic):
    rel = synthetic
    rel.answer_cache.clear()
    for row in range(0, len(rel.user_ids), 7):
        for picks in (20, (0, 2, 3, 9)):
            head = ListHead(rel, "home_feed", row, picks)
            entries = list(head)
            rel.answer_cache_limit = 0
            general = answers.items_json(rel, entries)
            fast = answers.items_json(rel, head)
            assert fast == general
            rel.answer_cache_limit = 16384
            assert answers.items_json(rel, head) == general  # stored under the head's key
            assert answers.items_json(rel, ListHead(rel, "home_feed", row, picks)) == general
            parsed = json.loads(general)
            assert len(parsed) == len(entries)
            assert [p["score"] for p in parsed] == pytest.approx([e[1] for e in entries],
                                                                 rel=1e-5)


def test_exclusions_request_filters_and_recent_items_leave_the_fast_path_correct(synthetic):
    rel = synthetic
    user, row = rel.user_ids[4].decode(), 4
    plain = list(recommend_user(rel, "home_feed", user, 5, None, EMPTY, Blend())[1])
    first = rel.item_id(plain[0][0])
    # a just-clicked item leaves the answer (and the blend is off here)
    recent = Recent(items=(first,), seeds=())
    _, entries, _ = recommend_user(rel, "home_feed", user, 5, None, recent, Blend())
    assert [e[0] for e in entries] == [e[0] for e in reference_answer(
        rel, "home_feed", row, 5, set(rel.purchased(row).tolist()) | {plain[0][0]})]
    # excluded ids and available_only=False
    flt = Filters(exclude_item_ids=[first], available_only=False)
    _, entries, _ = recommend_user(rel, "home_feed", user, 5, flt, EMPTY, Blend())
    items = rel.topn("home_feed", row)[0].tolist()
    bought = set(rel.purchased(row).tolist())
    assert [e[0] for e in entries] == [i for i in items if i != plain[0][0]
                                       and i not in bought][:5]


def test_answer_cache_off_serves_the_same_answers(tmp_path):
    answers_by_setting = []
    for entries in (16384, 0):
        settings = settings_for(tmp_path / str(entries), answer_cache_entries=entries)
        write_release(settings.releases_root, "r1", tiny_release_data())
        publish(settings.releases_root, "r1")
        with ServerThread(create_app(settings)) as srv:
            import httpx
            got = [httpx.get(f"{srv.url}/recommendations/users/{user}", params={"n": n}).text
                   for user in ("alice", "bob", "carol") for n in (1, 3, 3, 6)]
        answers_by_setting.append(got)
    assert answers_by_setting[0] == answers_by_setting[1]
    assert json.loads(answers_by_setting[1][1])["items"][0]["item_id"] == "i1"


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(data)

    def close(self):
        self.closed = True


class FakeCycle:
    def __init__(self):
        self.response_started = False
        self.response_complete = False


class FakeProtocol:
    def __init__(self):
        self.cycle = None


def test_held_head_transport_joins_the_head_to_the_body():
    raw, protocol = FakeTransport(), FakeProtocol()
    t = HeldHeadTransport(raw, protocol)
    t.write(b"early")  # no request yet (e.g. a 400 for a malformed request): passes
    protocol.cycle = FakeCycle()
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # interim answer before the response: passes
    protocol.cycle.response_started = True
    t.write(b"HEAD")
    assert raw.writes == [b"early", b"HTTP/1.1 100 Continue\r\n\r\n"]
    t.write(b"BODY1")
    t.write(b"BODY2")  # a streamed second chunk goes straight out
    assert raw.writes[2:] == [b"HEADBODY1", b"BODY2"]
    protocol.cycle.response_complete = True
    t.end_of_response()
    protocol.cycle = FakeCycle()
    protocol.cycle.response_started = True
    t.write(b"HEAD2")  # a response without a body chunk (HEAD request, or it failed)
    t.end_of_response()
    assert raw.writes[4:] == [b"HEAD2"]
    protocol.cycle = FakeCycle()
    protocol.cycle.response_started = True
    t.write(b"HEAD3")
    t.close()  # closing never loses a held head
    assert raw.writes[5:] == [b"HEAD3"] and raw.closed


def read_response(sock, buffer=b""):
    """One HTTP/1.1 response (Content-Length framed) from ``sock``: (head, body, rest)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return head, rest[:length], rest[length:]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("onewrite")
    settings = settings_for(tmp_path)
    write_release(settings.releases_root, "r1", tiny_release_data())
    publish(settings.releases_root, "r1")
    with ServerThread(create_app(settings)) as srv:
        yield srv


def test_one_write_server_keeps_http_semantics(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        # keep-alive: three requests, one connection, answers in order
        rest = b""
        for n in (1, 2, 3):
            sock.sendall(f"GET /recommendations/users/alice?n={n} HTTP/1.1\r\n"
                         "Host: x\r\n\r\n".encode())
            head, body, rest = read_response(sock, rest)
            assert head.startswith(b"HTTP/1.1 200") and len(json.loads(body)["items"]) == n
        # pipelined: two requests in one packet
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /recommendations/users/bob?n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        _, body, rest = read_response(sock, rest)
        assert json.loads(body)["status"] == "ok"
        _, body, rest = read_response(sock, rest)
        assert json.loads(body)["user_id"] == "bob"
        # HEAD: the head alone, no body
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = rest
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n")
        # Expect: 100-continue gets its interim answer before the body is sent
        body = json.dumps({"user_ids": ["alice"], "surface": "home_feed", "n": 2}).encode()
        sock.sendall(b"POST /recommendations/batch HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        head, answer, rest = read_response(sock, interim.partition(b"\r\n\r\n")[2])
        assert head.startswith(b"HTTP/1.1 200")
        assert [r["user_id"] for r in json.loads(answer)["results"]] == ["alice"]
        # Connection: close: the whole answer, then the end of the stream
        sock.sendall(b"GET /recommendations/users/alice?n=2 HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        head, answer, rest = read_response(sock, rest)
        assert len(json.loads(answer)["items"]) == 2
        assert rest == b"" and sock.recv(65536) == b""
    # a HEAD request as the first response of a connection (its head alone is held, then
    # written when the response ends)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n")


def test_release_row_lookups_are_cached_per_release(synthetic):
    rel = synthetic
    users = [rel.user_ids[k].decode() for k in range(len(rel.user_ids))]
    assert [rel.user_row(u) for u in users] == list(range(len(users)))
    assert [rel.user_row(u) for u in users] == list(range(len(users)))  # from the cache
    assert rel.user_row("nobody") == -1 and rel.item_row("") == -1
    assert rel.user_row.cache_info().hits >= len(users)
    rows = np.arange(len(rel.item_ids))
    assert [rel.item_row(rel.item_id(r)) for r in rows.tolist()] == rows.tolist()
