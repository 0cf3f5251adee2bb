"""Every ``recpipe bench`` command on a small workload (``--quick``): it runs, writes the JSON
keys the README and the issues quote, and measures its baseline in the same run (the
baseline's figure is there and positive, not a constant). ``bench quality --quick`` has its
own tests (``tests/evaluation/protocols/test_bench_quality.py``)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, recpipe, require

pytestmark = pytest.mark.slow


def run_bench(name: str, tmp_path, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert recpipe(["bench", name, "--quick", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture
def data_dir(monkeypatch):
    """The shared download cache of the checkout (MovieLens 100K from the RecBole wheel)."""
    monkeypatch.setenv("RECPIPE_DATA_DIR", str(REPO / "var" / "data"))


def test_ann_quick_compares_hnsw_with_exact_search(tmp_path):
    result = run_bench("ann", tmp_path)
    figures = result["synthetic"]
    assert {"recall_at_100", "ann_ms_per_query", "exact_ms_per_query", "ef_search",
            "shards", "build_s"} <= set(figures)
    assert 0 < figures["recall_at_100"] <= 1
    assert figures["exact_ms_per_query"] > 0 and figures["ann_ms_per_query"] > 0


def test_ann_layouts_quick_measures_every_layout_against_exact_search(tmp_path):
    result = run_bench("ann-layouts", tmp_path)
    layouts = {row["layout"]: row for row in result["layouts"]}
    assert {"Flat", "HNSW32,Flat"} <= set(layouts) and len(layouts) == 7
    assert layouts["Flat"]["points"][0]["recall_at_100"] == pytest.approx(1.0)
    for row in layouts.values():
        assert row["bytes_per_vector_ram"] > 0
        assert all(0 < p["recall_at_100"] <= 1 and p["ms_per_query"] > 0
                   for p in row["points"])
    pq = [r for name, r in layouts.items() if "PQ32" in name and "RFlat" not in name]
    assert all(r["bytes_per_vector_ram"] < layouts["Flat"]["bytes_per_vector_ram"] / 4
               for r in pq)


def test_topn_quick_compares_with_raw_matmul_and_argpartition(tmp_path):
    result = run_bench("topn", tmp_path)
    assert {"users_per_s", "fraction_of_matmul", "matmul_gflops",
            "baseline_argpartition_users_per_s"} <= set(result)
    assert result["matmul_gflops"] > 0 and result["baseline_argpartition_users_per_s"] > 0
    assert result["fraction_of_matmul"] > 0


@pytest.mark.spark
def test_als_quick_times_implicit_beside_spark(tmp_path, data_dir, spark):
    result = run_bench("als", tmp_path)
    assert result["dataset"] == "ml-100k" and result["iterations"] == 3
    assert result["implicit_s_per_iter"] > 0 and result["spark_s_per_iter"] > 0
    assert result["speedup"] == pytest.approx(
        result["spark_s_per_iter"] / result["implicit_s_per_iter"], rel=0.02)
    assert result["spark_checkpoint_interval"] == 5


def test_als_lineage_quick_probes_each_jvm_setting(tmp_path):
    result = run_bench("als-lineage", tmp_path, "--timeout", "300")
    assert result["ladder"] == [5]
    for case in ("profile_no_checkpoint", "jvm_defaults_no_checkpoint",
                 "profile_checkpointed"):
        probes = result[case]["probes"]
        assert [p["iterations"] for p in probes] == [5], case
        assert probes[0]["ok"] and probes[0]["seconds"] > 0, (case, probes)
        assert result[case]["deepest_ok"] == 5 and result[case]["first_failure"] is None


def test_serve_quick_measures_the_service_beside_healthz_and_redis(tmp_path):
    require(shutil.which("wrk") is not None, "wrk not installed (make test installs it)")
    require(shutil.which("redis-benchmark") is not None, "redis-benchmark not installed")
    result = run_bench("serve", tmp_path)
    assert {"p50_ms", "p99_ms", "rps", "healthz_rps", "ratio_to_healthz", "uncached",
            "redis_get", "load_s"} <= set(result)
    assert result["healthz_rps"] > 0 and result["rps"] > 0
    ratios = sorted(r["user_rps"] / r["healthz_rps"] for r in result["rounds"])
    assert result["ratio_to_healthz"] == pytest.approx(ratios[len(ratios) // 2])
    assert result["redis_get"]["rps"] > 0
    assert result["fixed_rate"]["errors"] == 0


def test_ranker_quick_runs_the_ctr_check(tmp_path, data_dir):
    result = run_bench("ranker", tmp_path)
    ctr = result["ctr"]
    assert [m["architecture"] for m in ctr["models"]] == ["dlrm"]
    model = ctr["models"][0]
    assert 0.5 < model["test_auc"] <= 1 and model["test_logloss"] > 0 and model["epochs_run"] == 1
    assert ctr["baseline"]["figures"]["DCNV2"]["auc"] == 0.9  # published, printed beside


def test_similar_quick_builds_every_pair_serves_and_compares_the_graph(tmp_path):
    require(shutil.which("wrk") is not None, "wrk not installed (make test installs it)")
    result = run_bench("similar", tmp_path)
    assert {"items", "pairs_kept", "build_s", "p50_ms", "p99_ms", "rps", "rss_mb"} <= set(result)
    assert result["items"] == 1500 and result["k"] == 20
    # every item with a vector keeps k pairs (the catalogue is larger than k)
    assert result["pairs_kept"] == result["items_with_lists"] * 20
    assert result["pairs_considered"] == result["items_with_lists"] * (
        result["items_with_lists"] - 1)
    assert result["non_2xx"] == 0 and result["rps"] > 0 and result["healthz_rps"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["rss_mb"] > 0
    assert 0.5 < result["graph"]["share_of_exact_pairs"] <= 1.0
    assert 0.5 < result["graph"]["share_of_exact_score"] <= 1.0 + 1e-9


def test_serve_production_mix_quick_measures_every_endpoint_and_ann(tmp_path):
    require(shutil.which("wrk") is not None, "wrk not installed (make test installs it)")
    from bench.redis_server import redis_binary

    require(redis_binary() is not None, "redis-server not installed (make test installs it)")
    result = run_bench("serve", tmp_path, "--mix", "production")
    assert {"p99_ms", "ratio_to_healthz", "ann_share", "ann_p99_ms", "non_2xx", "users",
            "rss_mb", "uss_mb", "rps_1_worker", "rps_2_workers"} <= set(result)
    assert result["users"] == 20_000 and result["non_2xx"] == 0
    by_label = result["cache_off"]["fixed_rate"]["by_label"]
    assert set(by_label) == {"user", "similar", "batch", "rerank", "events"}
    # users beyond the 30% with lists are answered from the shards, and only those
    answers = result["cache_off"]["answers"]
    assert answers.get("ann", 0) > 0 and answers.get("personalized", 0) > answers["ann"]
    assert 0 < result["ann_share"] < 0.5 and result["ann_p99_ms"] > 0
    assert result["rps_1_worker"] > 0 and result["rps_2_workers"] > 0
    assert len(result["two_workers"]["memory"]["pids"]) == 2
    assert result["phases"]["ann_answers"] > 0
