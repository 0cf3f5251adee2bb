"""Pre-swap checks: a new nightly release compared with the live one before CURRENT moves."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bench.release_synth import tiny_release_data
from conf import load_settings
from conf.errors import PreswapCheckFailed
from jobs.lake import Lake
from serving_export.release.preswap import compare, read_report
from serving_export.release.promotion import publish_release
from serving_export.release.publish import current_release, publish, read_history
from serving_export.release.writer import write_release
from tests.conftest import recpipe


def lists(rows):
    return pa.table({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                     "score": [1.0 - 0.01 * k for k in range(len(rows))],
                     "sources": [["als"]] * len(rows)})


def release(root, rid, home=None):
    data = tiny_release_data()
    if home is not None:
        data.topn = {**data.topn, "home_feed": lists(home)}
    write_release(root, rid, data)


@pytest.fixture
def env(tmp_path):
    settings = load_settings(overrides={"lake_root": str(tmp_path / "lake"),
                                        "serving": {"releases_root": str(tmp_path / "rel")}},
                             environ={})
    root = tmp_path / "rel"
    release(root, "live")
    publish(root, "live")
    return settings, root


def test_the_same_lists_pass_and_the_history_says_so(env):
    settings, root = env
    release(root, "same")
    publish_release(settings, root, "same")
    assert current_release(root) == "same"
    assert read_history(root)[-1]["preswap"] == "passed"
    report = read_report(root, "same")
    # users both releases know: alice, bob (lists) and carol (her segment's popular list)
    assert report["passed"] and report["users"] == 3
    assert report["figures"]["churn"] == 0.0 and report["figures"]["coverage_ratio"] == 1.0


def test_replacing_lists_is_blocked_past_the_threshold_until_forced_with_a_reason(
        env, capsys, monkeypatch):
    settings, root = env
    # alice and bob get lists of items none of them had; carol keeps her popular list
    release(root, "churned", [("alice", "i7", 0), ("alice", "i8", 0), ("bob", "i6", 0),
                              ("bob", "i5", 0)])
    publish_release(settings, root, "churned")  # 2/3 replaced: within the default 0.95
    publish(root, "live")
    strict = settings.model_copy(update={"preswap": settings.preswap.model_copy(
        update={"max_churn": 0.5})})
    with pytest.raises(PreswapCheckFailed, match="churn 0.667"):
        publish_release(strict, root, "churned")
    assert current_release(root) == "live"
    report = read_report(root, "churned")
    assert report["passed"] is False and report["figures"]["churn"] == pytest.approx(2 / 3)

    args = ["release", "--releases-root", str(root), "publish", "churned"]
    monkeypatch.setenv("RECPIPE_PRESWAP__MAX_CHURN", "0.5")
    monkeypatch.setenv("RECPIPE_LAKE_ROOT", settings.lake_root)
    assert recpipe(args) == 1
    assert "pre-swap checks" in capsys.readouterr().err
    monkeypatch.setenv("RECPIPE_SERVING__RELEASES_ROOT", str(root))
    assert recpipe(["status", "--ds", "2024-01-01"]) == 0
    out = capsys.readouterr().out
    assert "pre-swap vs live: FAILED (publish blocked)" in out and "churn 0.667" in out
    assert recpipe([*args, "--force"]) == 2  # a forced publish needs its reason
    assert recpipe([*args, "--force", "--reason", "new catalogue launch"]) == 0
    assert current_release(root) == "churned"
    entry = read_history(root)[-1]
    assert entry["forced"] == "new catalogue launch" and entry["preswap"] == "failed"
    capsys.readouterr()
    assert recpipe(["release", "--releases-root", str(root), "history"]) == 0
    assert "FORCED: new catalogue launch" in capsys.readouterr().out


def test_dropped_slots_and_a_collapse_onto_the_head_are_reasons(env):
    settings, root = env
    strict = settings.model_copy(update={"preswap": settings.preswap.model_copy(update={
        "max_removed_share": 0.1, "max_head_share_increase": 0.1, "head_items": 2,
        "max_churn": 1.0})})
    # alice: i4 unavailable, i2 bought; bob: i7 and i8 are the overall head (i7, i8, ...)
    release(root, "worse", [("alice", "i4", 0), ("alice", "i2", 0), ("alice", "i1", 0),
                            ("bob", "i7", 0), ("bob", "i8", 0)])
    report = compare(strict, root, "worse", "live")
    text = " ".join(report.reasons)
    assert "would be dropped at serve time" in text and "head's share" in text
    f = report.figures
    # slots: alice 3 (2 dropped), bob 2, carol 2 (i8, i6: her segment's list)
    assert f["removed_share"] == pytest.approx(2 / 7)
    assert f["head_share_new"] == pytest.approx(3 / 7)
    assert json.loads((root / "worse.preswap.json").read_text())["passed"] is False


def test_hourly_releases_and_first_publishes_are_not_checked(tmp_path):
    settings = load_settings(overrides={"lake_root": str(tmp_path / "lake")}, environ={})
    root = tmp_path / "rel"
    release(root, "first", [("alice", "i7", 0)])
    publish_release(settings, root, "first")
    assert read_report(root, "first") is None and current_release(root) == "first"


@pytest.mark.spark
def test_a_real_ndcg_drop_on_the_holdout_blocks_and_noise_does_not(settings, tmp_path):
    from serving_export.release.data import GateVerdict, ReleaseData
    from tests.evaluation.test_offline import DS, GOOD_ITEMS, ITEMS, write_day

    write_day(Lake(settings), DS, GOOD_ITEMS, "als-good")
    # holdout truth: u1 a2 b4, u2 a3, u3 a1, u4 b3, u5 b3, u6 b4 (u7, u8 have no list)
    hits = {"u1": ["a2", "b4"], "u2": ["a3"], "u3": ["a1"], "u4": ["b3"], "u5": ["b3"],
            "u6": ["b4"]}
    misses = {u: [i for i in ITEMS if i not in found][:2] for u, found in hits.items()}

    def build(rid, chosen):
        rows = [(u, i, 0) for u, items in chosen.items() for i in items]
        write_release(root, rid, ReleaseData(
            ds=DS, gate=GateVerdict(True), topn={"home_feed": lists(rows)},
            popularity=pa.table({"segment": [None] * 2, "item_id": ["b1", "a1"],
                                 "score": [2.0, 1.0]}),
            similar_items=pa.table({"item_id": ["a1"], "similar_item_id": ["a2"],
                                    "score": [1.0]}),
            items=pa.table({"item_id": ITEMS}), users=pa.table({"user_id": list(hits)})))

    root = tmp_path / "rel"
    build("good", hits)
    build("bad", misses)
    build("good2", hits)
    cfg = settings.preswap.model_copy(update={"min_slice_users": 5, "max_churn": 1.0,
                                              "min_coverage_ratio": 0.0})
    checked = settings.model_copy(update={"preswap": cfg})
    report = compare(checked, root, "bad", "good")
    everyone = next(s for s in report.slices if s["slice"] == "all")
    # u7's and u8's lists are the popular b1, a1: u7 hits a1 in both releases
    assert everyone["users"] == 7 and everyone["high"] < 0
    assert everyone["ndcg_new"] < everyone["ndcg_live"]
    assert any("NDCG@10 of all" in r for r in report.reasons)
    same = compare(checked, root, "good2", "good")
    assert same.passed and next(s for s in same.slices if s["slice"] == "all")["diff"] == 0
