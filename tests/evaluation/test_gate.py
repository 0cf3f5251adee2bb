"""The promotion gate: its checks on hand-made values, and the whole flow with a real MLflow
(SQLite store in a temporary folder) on the tiny lake of ``test_offline``.

Flow: day 1 a good model (no champion yet) passes, and becomes champion when its release is
published (not before); day 2 a broken one (cluster A and B item vectors swapped) is
rejected with reasons and the alias does not move; day 3 a good one passes and, published,
becomes champion with ``previous`` keeping day 1's version; a rollback of the releases moves
the aliases back to day 1.

On every day's holdout (see ``test_offline``; u7 has no vector and gets the popularity list,
truth at rank 3): good model NDCG@10 = (0.817529 + 5 + 0.5) / 7 = 0.902504, recall@2 =
5.5 / 7; popularity NDCG@10 = 0.475501, recall@2 = 0 (its top two are b1 b2 for A users, a1
a2 for B users, all seen or wrong). Swapped vectors put the other cluster first: the truth
lands at ranks 4-5, NDCG@10 = (0.501271 + 5 * 0.386853 + 0.5) / 7 = 0.419361, recall@2 = 0.
"""

from __future__ import annotations

import json

import pytest

from conf import load_settings
from conf.errors import NoCandidate
from conf.gate import GateSettings
from evaluation.gate import Check, decide
from jobs.lake import Lake

from .test_offline import DS, GOOD_ITEMS, IDCG2, SWAPPED_ITEMS, dcg, sections, write_day

CFG = GateSettings(metrics=["ndcg@10", "recall@100"], popularity_margin=0.1, tolerance=0.05,
                   coverage_k=100, coverage_floor=0.2)
GOOD_NDCG = ((1 + dcg(7)) / IDCG2 + 5 + dcg(3)) / 7
POP_NDCG = ((dcg(3) + dcg(7)) / IDCG2 + dcg(4) + 4 * dcg(3) + dcg(5)) / 7
BROKEN_NDCG = ((dcg(4) + dcg(5)) / IDCG2 + 5 * dcg(5) + dcg(3)) / 7


def _failed(checks: list[Check]) -> list[str]:
    return [c.name for c in checks if not c.passed]


# -- decide(): pure ------------------------------------------------------------------------
def test_first_candidate_that_beats_popularity_passes():
    checks = decide({"ndcg@10": 0.30, "recall@100": 0.50},
                    {"ndcg@10": 0.20, "recall@100": 0.40}, None, 0.5, 0, CFG)
    assert _failed(checks) == []
    assert {c.name for c in checks} == {"finite_vectors", "beats_popularity:ndcg@10",
                                        "beats_popularity:recall@100", "coverage"}


def test_margin_over_popularity_is_relative_and_strict():
    # 0.21 < 0.20 * 1.1 = 0.22 fails; 0.22 passes; a zero baseline needs a value above 0
    fail = decide({"ndcg@10": 0.21, "recall@100": 0.5}, {"ndcg@10": 0.2, "recall@100": 0.4},
                  None, 0.5, 0, CFG)
    assert _failed(fail) == ["beats_popularity:ndcg@10"]
    assert "needs >= 0.2200" in [c.message for c in fail if not c.passed][0]
    ok = decide({"ndcg@10": 0.22, "recall@100": 0.5}, {"ndcg@10": 0.2, "recall@100": 0.4},
                None, 0.5, 0, CFG)
    assert _failed(ok) == []
    zero = decide({"ndcg@10": 0.0, "recall@100": 0.5}, {"ndcg@10": 0.0, "recall@100": 0.4},
                  None, 0.5, 0, CFG)
    assert _failed(zero) == ["beats_popularity:ndcg@10"]


def test_served_lists_decide_the_popularity_check_and_the_model_the_champion_check():
    pop = {"ndcg@10": 0.20, "recall@100": 0.40}
    model = {"ndcg@10": 0.19, "recall@100": 0.38}      # alone, no better than popularity
    served = {"ndcg@10": 0.25, "recall@100": 0.45}     # the released lists are
    champion = {"ndcg@10": 0.30, "recall@100": 0.38}   # the model regresses on ndcg
    checks = decide(model, pop, None, 0.5, 0, CFG, served=served)
    assert _failed(checks) == []
    assert "served" in [c.message for c in checks if c.name.startswith("beats")][0]
    worse = decide(model, pop, None, 0.5, 0, CFG, served={"ndcg@10": 0.21,
                                                           "recall@100": 0.45})
    assert _failed(worse) == ["beats_popularity:ndcg@10"]
    regress = decide(model, pop, champion, 0.5, 0, CFG, served=served)
    assert _failed(regress) == ["no_regression:ndcg@10"]


def test_regression_tolerance_against_the_champion():
    pop = {"ndcg@10": 0.1, "recall@100": 0.1}
    champion = {"ndcg@10": 0.40, "recall@100": 0.60}
    # floors: 0.38 and 0.57
    ok = decide({"ndcg@10": 0.38, "recall@100": 0.57}, pop, champion, 0.5, 0, CFG, "v3")
    assert _failed(ok) == []
    bad = decide({"ndcg@10": 0.379, "recall@100": 0.9}, pop, champion, 0.5, 0, CFG, "v3")
    assert _failed(bad) == ["no_regression:ndcg@10"]
    assert "drops more than 5% of v3's 0.4000" in [c.message for c in bad if not c.passed][0]


def test_nan_vectors_metrics_and_low_coverage_fail():
    checks = decide({"ndcg@10": float("nan"), "recall@100": 0.5},
                    {"ndcg@10": 0.1, "recall@100": 0.1}, None, 0.1, 3, CFG)
    assert _failed(checks) == ["finite_vectors", "finite:ndcg@10", "coverage"]
    msgs = " | ".join(c.message for c in checks if not c.passed)
    assert "3 NaN or infinite" in msgs and "ndcg@10 is NaN" in msgs and "below the floor" in msgs


# -- the flow with MLflow -------------------------------------------------------------------
DAY2, DAY3 = "2024-01-04", "2024-01-05"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    settings = load_settings(overrides={"lake_root": str(tmp / "lake"),
                                        "data_dir": str(tmp / "data")})
    return settings, sections(tmp), Lake(settings)


def _cli(module, ds, settings, cfg, monkeypatch, capsys):
    monkeypatch.setattr(module, "eval_sections", lambda _: cfg)
    code = module.main(["--ds", ds, "--lake-root", settings.lake_root])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gate_without_candidate_is_a_clear_error(env):
    from evaluation import gate

    settings, cfg, lake = env
    write_day(lake, "2023-12-30", GOOD_ITEMS, "als-unregistered")
    with pytest.raises(NoCandidate, match="run `recpipe evaluate --ds 2023-12-30`"):
        gate.judge_date(settings, "2023-12-30", cfg)


def _ranker_version(cfg, ds: str, tmp) -> str:
    """Register a ``recpipe-ranker`` version for ``ds`` (as ``recpipe ranker train`` does,
    tagged with its date) and return its number."""
    import contextlib

    from mlflow.exceptions import MlflowException

    from evaluation import registry

    folder = tmp / f"ranker-{ds}"
    folder.mkdir(exist_ok=True)
    with registry.tracking(cfg.mlflow) as client:
        with contextlib.suppress(MlflowException):  # registered by an earlier day
            client.create_registered_model(cfg.mlflow.ranker_model)
        version = client.create_model_version(cfg.mlflow.ranker_model, str(folder),
                                              tags={registry.TAG_DS: ds})
    return str(version.version)


def _ranker_alias(cfg, alias: str) -> str | None:
    from evaluation import registry

    with registry.tracking(cfg.mlflow) as client:
        found = registry.alias_version(client, cfg.mlflow.ranker_model, alias)
    return None if found is None else str(found.version)


def _publish(settings, cfg, root, ds):
    """Write a release for ``ds`` (gate passed) and publish it through the release layer."""
    from bench.release_synth import tiny_release_data
    from serving_export.release.promotion import publish_release
    from serving_export.release.writer import write_release

    rid = f"{ds}-rel"
    write_release(root, rid, tiny_release_data(ds=ds))
    publish_release(settings.model_copy(update={"mlflow": cfg.mlflow}), root, rid)
    return rid


def _champion(cfg, name, alias="champion"):
    from evaluation import registry

    with registry.tracking(cfg.mlflow) as client:
        found = registry.alias_version(client, name, alias)
    return None if found is None else str(found.version)


def test_good_then_broken_then_good(env, monkeypatch, capsys, tmp_path):
    from evaluation import gate, offline, registry
    from serving_export.release.promotion import rollback_release

    settings, cfg, lake = env
    name = cfg.mlflow.embeddings_model
    root = tmp_path / "releases"
    rankers = {day: _ranker_version(cfg, day, tmp_path) for day in (DS, DAY2, DAY3)}

    # day 1: no champion; beats popularity -> passes; the alias waits for the publish
    write_day(lake, DS, GOOD_ITEMS, "als-day1")
    offline.evaluate(settings, DS, cfg)
    code, out, err = _cli(gate, DS, settings, cfg, monkeypatch, capsys)
    first = json.loads(out)
    assert code == 0, err
    assert first["passed"] and first["champion"] is None and "promoted" not in first
    assert first["reasons"] == []
    assert first["metrics"]["candidate"]["ndcg@10"] == pytest.approx(GOOD_NDCG)
    assert first["metrics"]["candidate"]["recall@2"] == pytest.approx(5.5 / 7)
    assert first["metrics"]["popularity"]["ndcg@10"] == pytest.approx(POP_NDCG)
    assert first["metrics"]["popularity"]["recall@2"] == 0.0
    assert _champion(cfg, name) is None  # the gate moves no alias
    _publish(settings, cfg, root, DS)
    v1 = _champion(cfg, name)
    assert v1 == first["candidate"]
    assert _champion(cfg, name, registry.PREVIOUS) is None
    # the ranker trained for the same date moves with it
    assert _champion(cfg, cfg.mlflow.ranker_model) == rankers[DS]
    assert gate.read_verdict(lake, DS)["passed"] is True
    # coverage@2 over the users with a vector: a2 a3 | a3 a4 | a1 a3 | b3 b4 | b3 b4 | b4 a1
    (coverage,) = [r["value"] for r in lake.read_arrow("gold/evaluation", [DS]).to_pylist()
                   if r["stage"] == "gate/candidate" and r["metric"] == "coverage"]
    assert coverage == pytest.approx(6 / 8)

    # day 2: swapped item vectors -> rejected, exit 1, reasons on stderr, alias unchanged
    write_day(lake, DAY2, SWAPPED_ITEMS, "als-day2-broken")
    offline.evaluate(settings, DAY2, cfg)
    code, out, err = _cli(gate, DAY2, settings, cfg, monkeypatch, capsys)
    second = json.loads(out)
    assert code == 1
    assert not second["passed"] and second["champion"] == v1
    assert second["metrics"]["candidate"]["ndcg@10"] == pytest.approx(BROKEN_NDCG)
    assert second["metrics"]["champion"]["ndcg@10"] == pytest.approx(GOOD_NDCG)
    failed = {c["name"] for c in second["checks"] if not c["passed"]}
    assert failed == {"beats_popularity:ndcg@10", "beats_popularity:recall@2",
                      "no_regression:ndcg@10", "no_regression:recall@2"}
    assert "REJECTED" in err and "does not beat popularity" in err and "drops more than" in err
    verdict = gate.read_verdict(lake, DAY2)
    assert verdict["passed"] is False and len(verdict["reasons"]) == 4
    assert _champion(cfg, cfg.mlflow.ranker_model) == rankers[DS]  # day 2's ranker stays out
    assert _champion(cfg, name) == v1
    with registry.tracking(cfg.mlflow) as client:
        broken = registry.find_version(client, name, DAY2)
        assert broken.tags[registry.TAG_GATE_PASSED] == "false"
        run = client.get_run(broken.tags[registry.TAG_EVAL_RUN])
        assert run.data.tags[registry.TAG_GATE_PASSED] == "false"
        assert run.data.metrics["gate/candidate/ndcg_at_10"] == pytest.approx(BROKEN_NDCG)
    # the evaluation rows of day 2 survive the gate's write
    rows = lake.read_arrow("gold/evaluation", [DAY2]).to_pylist()
    assert {"model", "popularity", "gate", "gate/candidate"} <= {r["stage"] for r in rows}

    # rerunning day 2 gives the same verdict
    assert not gate.judge_date(settings, DAY2, cfg).passed

    # day 3: good again -> passes against day 1; published, it is champion, previous day 1
    write_day(lake, DAY3, GOOD_ITEMS, "als-day3")
    offline.evaluate(settings, DAY3, cfg)
    third = gate.judge_date(settings, DAY3, cfg)
    assert third.passed and third.champion == v1
    assert _champion(cfg, name) == v1
    _publish(settings, cfg, root, DAY3)
    assert _champion(cfg, name) == third.candidate
    assert _champion(cfg, name, registry.PREVIOUS) == v1
    assert _champion(cfg, cfg.mlflow.ranker_model) == rankers[DAY3]
    assert _champion(cfg, cfg.mlflow.ranker_model, registry.PREVIOUS) == rankers[DS]
    # rerun of day 3: already champion, compared with previous again
    again = gate.judge_date(settings, DAY3, cfg)
    assert again.passed and again.champion == v1

    # rolling the releases back moves the aliases back with CURRENT
    live, champions = rollback_release(settings.model_copy(update={"mlflow": cfg.mlflow}),
                                       root)
    assert live == f"{DS}-rel"
    assert champions == {name: v1, cfg.mlflow.ranker_model: rankers[DS]}
    assert _champion(cfg, name) == v1 and _champion(cfg, cfg.mlflow.ranker_model) == rankers[DS]

    # a backfill of an old date never passes against a newer champion
    write_day(lake, "2024-01-01", GOOD_ITEMS, "als-old")
    offline.evaluate(settings, "2024-01-01", cfg)
    old = gate.judge_date(settings, "2024-01-01", cfg)
    assert not old.passed and [c.name for c in old.checks if not c.passed] == [
        "not_older_than_champion"]
    assert _champion(cfg, name) == v1


def test_verdict_json_has_no_nan():
    from evaluation.gate import Verdict

    v = Verdict(ds=DS, passed=False, reasons=("x",), candidate="2", champion=None,
                metrics={"candidate": {"ndcg@10": float("nan")}})
    text = json.dumps(v.to_json(), allow_nan=False)
    assert json.loads(text)["metrics"]["candidate"]["ndcg@10"] is None


def test_sections_come_from_the_root_settings():
    from conf import ConfigError
    from conf.gate import eval_sections

    s = load_settings(overrides={"lake_root": "x", "gate": {"tolerance": 0.1},
                                 "mlflow": {"experiment": "exp"}}, environ={})
    cfg = eval_sections(s)
    assert cfg.gate.tolerance == 0.1 and cfg.mlflow.experiment == "exp"
    assert cfg.offline.headline == ["ndcg@10", "recall@100"]
    with pytest.raises(ConfigError, match=r"gate\.metrics"):
        load_settings(overrides={"lake_root": "x", "gate": {"metrics": ["ndcg"]}}, environ={})
    with pytest.raises(ConfigError, match=r"headline cutoffs \[100\] are not in ks"):
        load_settings(overrides={"lake_root": "x", "offline_eval": {"ks": [10]}}, environ={})
