"""Sharded HNSW against brute force; id maps, the fresh-directory rule, tuning, reloading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conf.index import IndexSettings
from serving_export.faiss_errors import (
    IndexCorrupt,
    IndexDirectoryNotEmpty,
    RecallTargetNotMet,
)
from serving_export.faiss_index import (
    ShardedIndex,
    ann_recall,
    build_index,
    build_sharded_hnsw,
    exact_search,
    tune_ef_search,
)

N_ITEMS, DIM = 1500, 16


def clustered(n, rng, centres, basis):
    """Vectors near a few centres in an 8-d subspace of DIM, plus noise."""
    latent = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, 8))
    return (latent @ basis + 0.2 * rng.standard_normal((n, DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    centres, basis = rng.standard_normal((12, 8)), rng.standard_normal((8, DIM)) / 3
    items = clustered(N_ITEMS, rng, centres, basis)
    users = clustered(300, rng, centres, basis)
    external = rng.permutation(N_ITEMS).astype(np.int64) * 7 + 100_000  # unrelated to rows
    return items, users, external


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


def test_ann_recall_by_hand():
    found = np.array([[1, 2, 3], [4, 5, -1]])
    truth = np.array([[3, 2, 9], [4, 6, 7]])
    assert ann_recall(found, truth) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_exact_search_agrees_with_brute_force(data):
    items, users, external = data
    rows, _ = exact_search(items, users[:20], 10)
    truth, _ = brute_force(items, np.arange(N_ITEMS), users[:20], 10)
    np.testing.assert_array_equal(rows, truth)


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


def test_tuning_chooses_the_first_efsearch_meeting_the_target(data, tmp_path):
    items, users, external = data
    index = build_sharded_hnsw(items, external, shards=3, hnsw_m=16, ef_construction=80,
                               ef_search=1, threads=1)
    candidates = [2, 4, 8, 16, 32, 64, 128, 256, 512]
    tuning = tune_ef_search(index, users, k=50, target=0.95, candidates=candidates,
                            sample=10_000, seed=0)  # sample > Q: every query is used
    truth, _ = brute_force(items, external, users, 50)

    def recall(ef):
        found, _ = index.search(users, 50, ef_search=ef)
        return np.mean([len(set(f) & set(t)) / 50 for f, t in zip(found, truth, strict=True)])

    assert recall(tuning.ef_search) >= 0.95
    assert tuning.recall == pytest.approx(recall(tuning.ef_search), abs=1e-6)
    position = candidates.index(tuning.ef_search)
    assert position > 0, "efSearch 2 should not reach recall@50 0.95 here"
    assert recall(candidates[position - 1]) < 0.95
    assert index.ef_search == tuning.ef_search
    meta = json.loads((index.save(tmp_path / "t") / "meta.json").read_text())
    assert meta["ef_search"] == tuning.ef_search
    assert meta["tuning"]["recall"] == tuning.recall and meta["tuning"]["target"] == 0.95


@pytest.mark.parametrize(("target", "candidates"), [(1.01, [16, 64]), (0.999, [1])])
def test_tuning_raises_when_the_target_cannot_be_met(data, target, candidates):
    items, users, external = data
    index = build_sharded_hnsw(items, external, shards=2, hnsw_m=4, ef_construction=8,
                               ef_search=7, threads=1)
    with pytest.raises(RecallTargetNotMet) as caught:
        tune_ef_search(index, users, k=100, target=target, candidates=candidates, sample=100,
                       seed=1)
    assert sorted(caught.value.measured) == candidates
    assert caught.value.best_recall < target
    assert index.ef_search == 7 and index.tuning is None  # unchanged on failure


def test_build_index_from_settings_tunes_on_queries(data):
    items, users, external = data
    settings = IndexSettings(shards=2, hnsw_m=16, ef_construction=60, recall_k=20,
                             recall_target=0.9, ef_search_candidates=[16, 64, 256],
                             tune_queries=50, threads=1)
    index = build_index(items, external, settings, queries=users)
    assert len(index.shards) == 2
    assert index.tuning is not None and index.tuning.queries == 50
    assert index.ef_search in (16, 64, 256) and index.tuning.recall >= 0.9


def test_settings_reject_unordered_candidates():
    with pytest.raises(ValueError, match="increasing"):
        IndexSettings(ef_search_candidates=[64, 32])


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


@pytest.mark.gpu
def test_gpu_exact_search_matches_cpu(data, index, tmp_path):
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("FAISS here was built without CUDA (faiss-cpu)")
    items, users, _ = data
    cpu_rows, _ = exact_search(items, users, 20)
    gpu_rows, _ = exact_search(items, users, 20, use_gpu=True)
    assert ann_recall(gpu_rows, cpu_rows) >= 0.999
    on_gpu = ShardedIndex.load(index.save(tmp_path / "g"), use_gpu=True)
    np.testing.assert_array_equal(on_gpu.search(users, 20)[0], index.search(users, 20)[0])


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
