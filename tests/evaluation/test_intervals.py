"""Bootstrap intervals: constant values, a known normal mean, a paired shift."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.intervals import bootstrap_interval, paired_interval


def test_constant_values_give_a_point_interval() -> None:
    assert bootstrap_interval(np.full(50, 0.25), seed=0) == pytest.approx((0.25, 0.25))


def test_interval_width_matches_the_normal_theory() -> None:
    values = np.random.default_rng(1).normal(0.3, 0.2, 4000)
    low, high = bootstrap_interval(values, seed=2)
    half_width = 1.96 * values.std() / np.sqrt(values.size)  # about 0.0062
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_nan_users_are_left_out() -> None:
    values = np.array([1.0, np.nan, 1.0, np.nan])
    assert bootstrap_interval(values, seed=0) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_interval(np.array([np.nan]), seed=0)))


def test_paired_interval_cancels_per_user_difficulty() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(500)  # users differ a lot
    mean, low, high = paired_interval(base + 0.01, base, seed=4)
    assert mean == pytest.approx(0.01) and low == pytest.approx(0.01)
    assert high == pytest.approx(0.01)
    unpaired = bootstrap_interval(base + 0.01, seed=4)
    assert unpaired[0] < 0.5 < unpaired[1]  # the unpaired interval is far wider


def test_bad_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="level must lie in"):
        bootstrap_interval(np.ones(3), seed=0, level=1.5)
    with pytest.raises(ValueError, match="same users"):
        paired_interval(np.ones(3), np.ones(4), seed=0)
