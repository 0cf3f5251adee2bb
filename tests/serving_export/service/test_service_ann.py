"""ANN answers from the release's FAISS shards, with a real redis-server as the real-time
store: users with a vector but no precomputed list, items with a vector but no neighbour
list, the rules applied to both, the ``reason`` of every item, corrupt shards refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from bench.redis_server import RedisServer, redis_binary
from bench.release_synth import with_faiss
from bench.server_thread import ServerThread
from conf.errors import ReleaseCorrupt
from serving_export.release.data import Embeddings, GateVerdict, ReleaseData
from serving_export.release.publish import publish
from serving_export.release.reader import Release
from serving_export.release.writer import write_release
from serving_export.service import create_app, reasons
from serving_export.service.models import (
    RerankResponse,
    SimilarItems,
    UserRecommendations,
)
from tests.conftest import require
from tests.serving_export.service.test_service import KEY, ids, settings_for

pytestmark = pytest.mark.redis

D, N_ITEMS, N_USERS = 8, 300, 40
ITEMS = [f"i{k:03d}" for k in range(N_ITEMS)] + ["new1"]
USERS = [f"u{k:02d}" for k in range(N_USERS)]
RNG = np.random.default_rng(7)
ITEM_VECTORS = RNG.standard_normal((len(ITEMS), D)).astype(np.float32)
USER_VECTORS = RNG.standard_normal((N_USERS, D)).astype(np.float32)
AVAILABLE = np.array([k % 7 != 3 for k in range(len(ITEMS))])
EVEN = np.array([k % 2 == 0 and k < N_ITEMS for k in range(len(ITEMS))])


def exact(vector: np.ndarray, n: int, drop: set[str] = frozenset(),
          only: np.ndarray | None = None) -> list[str]:
    """The n available items of highest inner product with ``vector``, by brute force."""
    order = np.argsort(-(ITEM_VECTORS @ vector), kind="stable")
    keep = [ITEMS[k] for k in order.tolist()
            if AVAILABLE[k] and ITEMS[k] not in drop and (only is None or only[k])]
    return keep[:n]


U10_BOUGHT = exact(USER_VECTORS[10], 1)[0]


def ann_release_data() -> ReleaseData:
    """300 items and a content-only item ``new1``; lists only for u00-u04 and i000-i099."""
    listed = USERS[:5]
    home = pa.table({"user_id": [u for u in listed for _ in range(30)],
                     "item_id": [ITEMS[k] for _ in listed for k in range(30)],
                     "score": [1.0 - k / 100 for _ in listed for k in range(30)],
                     "sources": [["ann"]] * 150})
    own = [ITEMS[k] for k in range(100) for _ in range(5)]
    similar = pa.table({"item_id": own,
                        "similar_item_id": [ITEMS[k + j] for k in range(100) for j in range(1, 6)],
                        "score": [0.9] * len(own)})
    popularity = pa.table({"segment": [None] * 20 + ["s1"] * 10,
                           "item_id": ITEMS[:20] + ITEMS[20:30],
                           "score": [float(30 - k) for k in range(30)]})
    items = pa.table({"item_id": ITEMS,
                      "title": [f"Title {k}" for k in range(N_ITEMS)] + ["A new title"],
                      "categories": [["even"] if EVEN[k] else ["odd"] for k in range(len(ITEMS))],
                      "available": AVAILABLE.tolist(),
                      "boost": [1.0] * len(ITEMS)})
    users = pa.table({"user_id": USERS,
                      "segment": ["s1" if k % 2 == 0 else None for k in range(N_USERS)],
                      "purchased": [[U10_BOUGHT] if k == 10 else [] for k in range(N_USERS)]})
    # Embeddings in an order unlike the release's rows: the writer must map FAISS ids.
    order = RNG.permutation(len(ITEMS))
    return ReleaseData(
        ds="2024-01-01", gate=GateVerdict(True), topn={"home_feed": home},
        similar_items=similar, popularity=popularity, items=items, users=users,
        user_embeddings=Embeddings(USERS, USER_VECTORS),
        item_embeddings=Embeddings([ITEMS[k] for k in order], ITEM_VECTORS[order]),
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require(redis_binary() is not None, "redis-server binary not installed "
            "(apt-get install redis-server; make test installs it)")
    tmp_path = tmp_path_factory.mktemp("ann")
    redis = RedisServer(tmp_path / "redis")
    try:
        settings = settings_for(tmp_path, redis_url=redis.url, max_n=50)
        data = with_faiss(ann_release_data(), tmp_path / "build", shards=3, hnsw_m=16,
                          ef_search=400)
        write_release(settings.releases_root, "r1", data)
        publish(settings.releases_root, "r1")
        with ServerThread(create_app(settings)) as srv:
            srv.settings = settings
            yield srv
    finally:
        redis.stop()


def user(srv, user_id, **params):
    r = httpx.get(f"{srv.url}/recommendations/users/{user_id}", params=params, timeout=5)
    assert r.status_code == 200, r.text
    return UserRecommendations.model_validate(r.json()).model_dump()


def similar(srv, item_id, **params):
    r = httpx.get(f"{srv.url}/recommendations/items/{item_id}/similar", params=params,
                  timeout=5)
    assert r.status_code == 200, r.text
    return SimilarItems.model_validate(r.json()).model_dump()


def test_faiss_ids_are_release_item_rows(service):
    rel = Release.load(service.settings.releases_root + "/r1")
    assert rel.ann is not None and rel.ann.ntotal == len(ITEMS)
    vectors, rows = rel.ann.vectors()
    # every indexed vector is the release's vector of the row its id names
    np.testing.assert_allclose(vectors, rel.item_vectors[rows], rtol=1e-6)


def test_user_with_a_vector_but_no_list_gets_nearest_items(service):
    body = user(service, "u10", n=10)
    assert body["source"] == "ann"
    # u10 bought its nearest item: gone, like unavailable items
    assert ids(body) == exact(USER_VECTORS[10], 10, drop={U10_BOUGHT})
    expected = {ITEMS[k]: float(ITEM_VECTORS[k] @ USER_VECTORS[10]) for k in range(len(ITEMS))}
    assert [i["score"] for i in body["items"]] == pytest.approx(
        [expected[i] for i in ids(body)], rel=1e-4)
    assert {(i["source"], i["reason"]) for i in body["items"]} == {("ann", reasons.ANN)}
    # a user with a list keeps it; a user without a vector gets popular items
    assert user(service, "u01", n=3)["source"] == "personalized"
    assert user(service, "nobody", n=3)["source"] == "popular"


def test_ann_answers_pass_request_filters(service):
    flt = json.dumps({"include_categories": ["even"], "exclude_item_ids": ["i000"],
                      "blend_similar": False})
    body = user(service, "u12", n=20, filters=flt)
    assert body["source"] == "ann"
    assert ids(body) == exact(USER_VECTORS[12], 20, drop={"i000"}, only=EVEN)


def test_a_click_is_suppressed_and_blends_similar_items(service):
    top = exact(USER_VECTORS[13], 1)[0]
    k = ITEMS.index(top)
    r = httpx.post(service.url + "/events/interactions", headers={"X-API-Key": KEY},
                   json={"events": [{"user_id": "u13", "item_id": top,
                                     "event_type": "click"}]})
    assert r.status_code == 202 and r.json()["degraded"] is False
    plain = user(service, "u13", n=10, filters=json.dumps({"blend_similar": False}))
    assert ids(plain) == exact(USER_VECTORS[13], 10, drop={top})
    blended = user(service, "u13", n=10)
    assert top not in ids(blended) and len(ids(blended)) == 10
    if k < 100:  # the clicked item has a neighbour list: its items are blended in
        kinds = {i["source"]: i["reason"] for i in blended["items"]}
        assert kinds["similar"] == f"similar to Title {k}"
        assert kinds["ann"] == reasons.ANN


def test_new_item_gets_similar_items_from_its_vector(service):
    body = similar(service, "new1", n=5)
    assert body["source"] == "ann"
    assert ids(body) == exact(ITEM_VECTORS[-1], 5, drop={"new1"})
    assert {i["reason"] for i in body["items"]} == {"similar to A new title"}
    flt = json.dumps({"include_categories": ["odd"]})
    odd = similar(service, "i150", n=5, filters=flt)
    assert odd["source"] == "ann"
    assert ids(odd) == exact(ITEM_VECTORS[150], 5, drop={"i150"}, only=~EVEN)
    listed = similar(service, "i001", n=3)
    assert listed["source"] == "similar" and ids(listed) == ["i002", "i004", "i005"]
    assert {i["reason"] for i in listed["items"]} == {"similar to Title 1"}


def test_every_answer_item_has_a_source_and_a_reason(service):
    answers = [user(service, "u00", n=5), user(service, "u20", n=5),
               user(service, "u21", n=5), user(service, "nobody", n=5),
               similar(service, "i003", n=5), similar(service, "new1", n=5)]
    batch = httpx.post(service.url + "/recommendations/batch",
                       json={"user_ids": ["u00", "u22"], "surface": "home_feed", "n": 4}).json()
    answers += batch["results"]
    rerank = httpx.post(service.url + "/recommendations/rerank",
                        json={"user_id": "u22", "item_ids": ["i001", "i002"]}).json()
    answers.append(RerankResponse.model_validate(rerank).model_dump())
    assert {a["source"] for a in answers} >= {"personalized", "ann", "popular", "similar"}
    for answer in answers:
        assert answer["items"]
        for item in answer["items"]:
            assert item["source"] and item["reason"], (answer["source"], item)
    personalized = answers[0]["items"][0]
    assert personalized["reason"] == reasons.for_strategies(["ann"])
    unknown = user(service, "nobody", n=2)  # the overall list
    assert {i["reason"] for i in unknown["items"]} == {reasons.POPULAR}


def test_corrupt_shards_are_refused_and_the_live_release_keeps_serving(service, tmp_path):
    root = Path(service.settings.releases_root)
    for rid in ("r2", "r3", "r4"):
        write_release(root, rid, with_faiss(ann_release_data(), tmp_path / rid, shards=3,
                                            hnsw_m=16))
    # r2: a shard's bytes changed (same size): the hash check refuses it
    shard = root / "r2/faiss/shard-001.faiss"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    # r3: an id map names a row the release lacks; r4: a shard is not a FAISS index.
    # Both are refused even without hash checks.
    id_map = root / "r3/faiss/shard-000.ids.npy"
    values = np.load(id_map)
    values[0] = len(ITEMS) + 5
    np.save(id_map, values)
    (root / "r4/faiss/shard-002.faiss").write_bytes(b"\0" * shard.stat().st_size)
    with pytest.raises(ReleaseCorrupt, match="outside"):
        Release.load(root / "r3", verify=False)
    with pytest.raises(ReleaseCorrupt, match="FAISS shards cannot be loaded"):
        Release.load(root / "r4", verify=False)
    for failures, rid in enumerate(("r2", "r3", "r4"), start=1):
        (root / "CURRENT").write_text(f"{rid}\n")
        wanted = f"recpipe_release_reload_failures_total {float(failures)}"
        deadline = time.monotonic() + 5
        while wanted not in httpx.get(service.url + "/metrics").text:
            assert time.monotonic() < deadline, f"{rid} was not refused"
            time.sleep(0.05)
        body = user(service, "u10", n=3)
        assert body["release_id"] == "r1" and body["source"] == "ann"
    (root / "CURRENT").write_text("r1\n")
