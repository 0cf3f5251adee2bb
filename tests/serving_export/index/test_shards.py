"""Sharded HNSW against brute force: id maps, merging, the fresh-directory rule, reloading."""

from __future__ import annotations

import numpy as np
import pytest

from conf.errors import IndexCorrupt, IndexDirectoryNotEmpty
from evaluation.metrics import ann_recall
from serving_export.index.build import build_sharded_hnsw
from serving_export.index.shards import ShardedIndex

N_ITEMS, DIM = 1500, 16


def clustered(n, rng, centres, basis):
    """Vectors near a few centres in an 8-d subspace of DIM, plus noise."""
    latent = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, 8))
    return (latent @ basis + 0.2 * rng.standard_normal((n, DIM))).astype(np.float32)


def make_data():
    """(items (N_ITEMS, DIM), users (300, DIM), external ids (N_ITEMS,)) with cluster structure."""
    rng = np.random.default_rng(5)
    centres, basis = rng.standard_normal((12, 8)), rng.standard_normal((8, DIM)) / 3
    items = clustered(N_ITEMS, rng, centres, basis)
    users = clustered(300, rng, centres, basis)
    external = rng.permutation(N_ITEMS).astype(np.int64) * 7 + 100_000  # unrelated to rows
    return items, users, external


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def index(data):
    items, _, external = data
    return build_sharded_hnsw(items, external, shards=3, hnsw_m=16, ef_construction=80,
                              ef_search=64, threads=1)


def brute_force(items, external, queries, k):
    """Independent truth: float64 scores, full sort, rows mapped to external ids."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return external[rows], np.take_along_axis(scores, rows, axis=1)


@pytest.mark.parametrize("augment", [True, False])
def test_recall_against_brute_force_is_high(data, augment):
    items, users, external = data
    index = build_sharded_hnsw(items, external, shards=3, hnsw_m=16, ef_construction=80,
                               ef_search=64, threads=1, augment=augment)
    found, _ = index.search(users, 50, ef_search=128)
    truth, _ = brute_force(items, external, users, 50)
    hits = [len(set(f) & set(t)) / 50 for f, t in zip(found, truth, strict=True)]
    assert np.mean(hits) >= 0.97
    assert len(index.shards) == 3 and index.ntotal == N_ITEMS


def test_returned_scores_belong_to_the_returned_external_ids(data, index):
    items, users, external = data
    row_of = {int(e): r for r, e in enumerate(external)}
    ids, scores = index.search(users[:40], 25)
    assert set(ids.ravel().tolist()) <= set(row_of)
    recomputed = np.array([[users[q] @ items[row_of[int(i)]] for i in row] for q, row in
                           enumerate(ids)])
    np.testing.assert_allclose(scores, recomputed, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_id_maps_are_the_contiguous_split_of_external_ids(data, index):
    _, _, external = data
    np.testing.assert_array_equal(np.concatenate(index.id_maps), external)
    assert [len(m) for m in index.id_maps] == [500, 500, 500]


def test_more_results_than_items_are_padded():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    small = build_sharded_hnsw(vectors, np.array([30, 10, 20]), shards=2, hnsw_m=4,
                               ef_construction=8, ef_search=8)
    ids, scores = small.search(np.array([[1.0, 0.5]], dtype=np.float32), 5)
    # Scores by hand: id 30 -> 1.0, id 10 -> 0.5, id 20 -> 2.0.
    assert ids.tolist() == [[20, 30, 10, -1, -1]]
    assert scores.tolist() == [[2.0, 1.0, 0.5, -np.inf, -np.inf]]


def test_save_then_load_gives_the_same_results(data, index, tmp_path):
    _, users, _ = data
    target = index.save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no staging left behind
    want = index.search(users, 30)
    for mmap in (False, True):
        again = ShardedIndex.load(target, mmap=mmap)
        got = again.search(users, 30)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert again.ef_search == index.ef_search and again.hnsw_m == 16


def test_save_refuses_a_non_empty_directory(index, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "other.txt").write_text("x")
    with pytest.raises(IndexDirectoryNotEmpty):
        index.save(full)
    assert sorted(p.name for p in full.iterdir()) == ["other.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(IndexDirectoryNotEmpty):
        index.save(afile)
    empty = tmp_path / "empty"
    empty.mkdir()
    index.save(empty)  # an existing empty directory counts as fresh
    assert (empty / "meta.json").is_file()
    with pytest.raises(IndexDirectoryNotEmpty):
        index.save(empty)  # written once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "full"]


def test_missing_shard_file_is_reported(index, tmp_path):
    target = index.save(tmp_path / "idx")
    (target / "shard-001.ids.npy").unlink()
    with pytest.raises(IndexCorrupt, match=r"shard-001\.ids\.npy"):
        ShardedIndex.load(target)


@pytest.mark.parametrize("bad", [{"shards": 0}, {"hnsw_m": 0}])
def test_build_rejects_bad_parameters(data, bad):
    items, _, external = data
    args = {"shards": 2, "hnsw_m": 8, "ef_construction": 8, "ef_search": 8, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_sharded_hnsw(items, external, **args)


def test_build_rejects_duplicate_ids(data):
    items, _, _ = data
    with pytest.raises(ValueError, match="unique"):
        build_sharded_hnsw(items, np.zeros(N_ITEMS, dtype=np.int64), shards=2, hnsw_m=8,
                           ef_construction=8, ef_search=8)


def test_augmented_index_keeps_exact_scores_and_round_trips(data, tmp_path):
    items, users, external = data
    index = build_sharded_hnsw(items, external, shards=2, hnsw_m=16, ef_construction=80,
                               ef_search=256, threads=1, augment=True)
    assert index.dim == DIM and index.shards[0].d == DIM + 1
    vectors, ids = index.vectors()
    np.testing.assert_array_equal(vectors, items)  # the sphere coordinate is stripped
    np.testing.assert_array_equal(ids, external)
    found, scores = index.search(users[:30], 20)
    truth, truth_scores = brute_force(items, external, users[:30], 20)
    assert ann_recall(found, truth) >= 0.97
    np.testing.assert_allclose(scores[:, 0], truth_scores[:, 0], rtol=1e-4)
    again = ShardedIndex.load(index.save(tmp_path / "aug"))
    assert again.augmented and again.dim == DIM
    np.testing.assert_array_equal(again.search(users[:30], 20)[0], found)


@pytest.mark.parametrize("augment", [True, False])
def test_one_query_lookup_merges_shards_like_search(data, augment, tmp_path):
    """``lookup`` (every shard at once in FAISS's threads, merged in C++) finds what
    ``search`` finds, on a freshly built and on a memory-mapped index."""
    items, users, external = data
    built = build_sharded_hnsw(items, external, shards=3, hnsw_m=16, ef_construction=80,
                               ef_search=96, threads=1, augment=augment)
    mapped = ShardedIndex.load(built.save(tmp_path / "index"), mmap=True)
    for index in (built, mapped):
        for query in users[:30]:
            ids, scores = index.lookup(query, 20)
            want_ids, want_scores = index.search(query[None, :], 20)
            assert set(ids.tolist()) == set(want_ids[0].tolist())
            np.testing.assert_allclose(np.sort(scores), np.sort(want_scores[0]), rtol=1e-5)
            assert (np.diff(scores) <= 1e-6).all()
    ids, _ = built.lookup(users[0], 10 * N_ITEMS)  # more than the index holds
    assert 0 < len(ids) <= N_ITEMS and len(set(ids.tolist())) == len(ids)
    assert set(ids.tolist()) <= set(external.tolist())
