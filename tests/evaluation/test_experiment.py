"""The experiment report on simulated experiments with a fixed seed: a truly better variant
is found, an A/A test's interval holds zero, intervals over users keep their coverage where
intervals over impressions do not, and a broken split fails the sample-ratio check."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from conf.experiments import ExperimentSettings
from evaluation.experiment import ratio_over_users, report, srm_p_value, user_totals
from tests.conftest import recpipe

SHARES = {"champion": 0.5, "challenger": 0.5}


def simulate(users: int, lift: float, seed: int, drop_challenger: float = 0.0
             ) -> tuple[pa.Table, pa.Table]:
    """Impressions and attributed events: each user has their own click propensity (Beta,
    mean 5%: users differ far more than impressions), 1 + Poisson(4) impressions, clicks
    Bernoulli(propensity x lift of the challenger), a fifth of clicks convert."""
    exp = ExperimentSettings(name="sim", salt=f"s{seed}", variants=SHARES)
    rng = np.random.default_rng(seed)
    imp_rows: dict[str, list] = {"recommendation_id": [], "user_id": [], "variant": []}
    ev_rows: dict[str, list] = {"recommendation_id": [], "event_type": []}
    rid = 0
    for u in range(users):
        user = f"u{u}"
        variant = exp.variant_of(user)
        if variant == "challenger" and rng.random() < drop_challenger:
            continue  # a logging bug loses some of the challenger's users
        p = rng.beta(0.5, 9.5) * (lift if variant == "challenger" else 1.0)
        for _ in range(1 + rng.poisson(4)):
            rid += 1
            imp_rows["recommendation_id"].append(f"r{rid}")
            imp_rows["user_id"].append(user)
            imp_rows["variant"].append(variant)
            if rng.random() < min(p, 1.0):
                ev_rows["recommendation_id"].append(f"r{rid}")
                ev_rows["event_type"].append("click")
                if rng.random() < 0.2:
                    ev_rows["recommendation_id"].append(f"r{rid}")
                    ev_rows["event_type"].append("purchase")
    return pa.table(imp_rows), pa.table(ev_rows)


def run(users: int, lift: float, seed: int, drop: float = 0.0):
    impressions, events = simulate(users, lift, seed, drop)
    return report("sim", user_totals(impressions, events), SHARES, "champion")


def test_assignment_is_deterministic_and_follows_the_shares():
    exp = ExperimentSettings(name="x", salt="a", variants={"champion": 0.8, "challenger": 0.2})
    picks = [exp.variant_of(f"u{i}") for i in range(20_000)]
    assert picks == [exp.variant_of(f"u{i}") for i in range(20_000)]
    assert abs(picks.count("challenger") / len(picks) - 0.2) < 0.01
    other = ExperimentSettings(name="x", salt="b", variants=exp.variants)
    assert sum(a != other.variant_of(f"u{i}") for i, a in enumerate(picks)) > 4000
    with pytest.raises(ValueError, match="control"):
        ExperimentSettings(name="x", salt="a", variants={"a": 1, "b": 1})


def test_a_truly_better_variant_is_found():
    r = run(20_000, lift=1.15, seed=1)
    diff = r.differences[0]
    assert diff.variant == "challenger" and diff.ctr[1] > 0  # the interval excludes zero
    by = {v.variant: v for v in r.variants}
    assert by["challenger"].ctr.value > by["champion"].ctr.value
    assert not r.srm_failed


def test_without_a_difference_the_interval_holds_zero():
    r = run(20_000, lift=1.0, seed=2)
    low, high = r.differences[0].ctr[1:]
    assert low < 0 < high
    low, high = r.differences[0].conversion[1:]
    assert low < 0 < high


def test_intervals_over_users_keep_their_coverage_and_over_impressions_do_not():
    """40 A/A experiments: the delta-method interval over users holds zero about 95% of the
    time; a binomial interval over impressions (ignoring that a user's impressions are
    correlated) is narrower and misses far more often."""
    held_users = held_impressions = 0
    for seed in range(40):
        r = run(3_000, lift=1.0, seed=100 + seed)
        low, high = r.differences[0].ctr[1:]
        held_users += low < 0 < high
        a, b = r.variants
        se = np.sqrt(sum(v.ctr.value * (1 - v.ctr.value) / v.impressions for v in (a, b)))
        d = r.differences[0].ctr[0]
        held_impressions += abs(d) < 1.96 * se
    assert held_users >= 35
    assert held_impressions < held_users


def test_delta_method_variance_matches_a_bootstrap_over_users():
    rng = np.random.default_rng(7)
    shown = 1 + rng.poisson(4, size=4000)
    clicks = rng.binomial(shown, rng.beta(0.5, 9.5, size=4000))
    delta = ratio_over_users(clicks, shown).variance
    picks = rng.integers(0, 4000, size=(2000, 4000))
    boot = (clicks[picks].sum(axis=1) / shown[picks].sum(axis=1)).var()
    assert delta == pytest.approx(boot, rel=0.15)


def test_a_broken_split_fails_the_sample_ratio_check():
    assert run(20_000, lift=1.0, seed=3, drop=0.1).srm_failed
    assert srm_p_value({"champion": 5000, "challenger": 5050}, SHARES) > 0.5


def test_the_command_prints_the_report_and_draws_it(tmp_path, monkeypatch, capsys):
    impressions, events = simulate(2000, lift=1.0, seed=4)
    import pyarrow.parquet as pq

    pq.write_table(impressions, tmp_path / "impressions.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    monkeypatch.setenv("RECPIPE_EXPERIMENTS", json.dumps(
        [{"name": "sim", "salt": "s4", "variants": SHARES}]))
    args = ["experiment", "report", "--name", "sim", "--impressions",
            str(tmp_path / "impressions.parquet"), "--events", str(tmp_path / "events.parquet"),
            "--png", str(tmp_path / "sim.png"), "--json", str(tmp_path / "sim.json")]
    assert recpipe(args) == 0
    out = capsys.readouterr().out
    assert "challenger - champion: CTR" in out and "sample ratio" in out
    assert (tmp_path / "sim.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "sim.json").read_text())["srm_failed"] is False
    assert recpipe([*args[:3], "nope", *args[4:]]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err
