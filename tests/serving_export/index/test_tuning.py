"""Tuning efSearch against exact search: recall by hand, first candidate meeting the target,
the named failure, and the settings-driven build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conf.errors import RecallTargetNotMet
from conf.index import IndexSettings
from evaluation.metrics import ann_recall
from serving_export.index.build import build_index, build_sharded_hnsw
from serving_export.index.shards import ShardedIndex
from serving_export.index.tuning import exact_search, tune_ef_search
from tests.serving_export.index.test_shards import N_ITEMS, brute_force, make_data


@pytest.fixture(scope="module")
def data():
    return make_data()


def test_exact_search_agrees_with_brute_force(data):
    items, users, external = data
    rows, _ = exact_search(items, users[:20], 10)
    truth, _ = brute_force(items, np.arange(N_ITEMS), users[:20], 10)
    np.testing.assert_array_equal(rows, truth)


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


@pytest.mark.gpu
def test_gpu_exact_search_matches_cpu(data, tmp_path):
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("FAISS here was built without CUDA (faiss-cpu)")
    items, users, _ = data
    cpu_rows, _ = exact_search(items, users, 20)
    gpu_rows, _ = exact_search(items, users, 20, use_gpu=True)
    assert ann_recall(gpu_rows, cpu_rows) >= 0.999
    index = build_sharded_hnsw(items, np.arange(N_ITEMS), shards=2, hnsw_m=16,
                               ef_construction=40, ef_search=64, threads=1)
    on_gpu = ShardedIndex.load(index.save(tmp_path / "g"), use_gpu=True)  # HNSW may stay on CPU
    np.testing.assert_array_equal(on_gpu.search(users, 20)[0], index.search(users, 20)[0])
