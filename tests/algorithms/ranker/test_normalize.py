"""Dense statistics: streamed equals one pass, transforms, missing values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from algorithms.ranker.normalize import DenseStats, DenseStatsAccumulator


def test_hand_example():
    acc = DenseStatsAccumulator(("a",), (False,))
    acc.update(np.array([[1.0], [3.0]]))
    stats = acc.finish()
    assert stats.mean == (2.0,) and stats.std == (1.0,)
    out = stats.apply(np.array([[1.0], [3.0], [np.nan]]))
    np.testing.assert_array_equal(out, np.array([[-1.0], [1.0], [0.0]], np.float32))
    assert out.dtype == np.float32


def test_streamed_matches_numpy_with_missing_values_and_log1p():
    rng = np.random.default_rng(1)
    raw = np.stack([rng.normal(5, 2, 1000), rng.exponential(100, 1000)], axis=1)
    raw[rng.random(1000) < 0.1, 0] = np.nan
    acc = DenseStatsAccumulator(("a", "b"), (False, True))
    for part in np.array_split(raw, 7):
        acc.update(part)
    stats = acc.finish()
    a = raw[~np.isnan(raw[:, 0]), 0]
    b = np.log1p(raw[:, 1])
    assert stats.mean == pytest.approx((a.mean(), b.mean()))
    assert stats.std == pytest.approx((a.std(), b.std()))


def test_signed_log1p_keeps_negatives():
    acc = DenseStatsAccumulator(("a",), (True,))
    acc.update(np.array([[-math.e + 1], [math.e - 1]]))  # -> -1, +1
    stats = acc.finish()
    assert stats.mean[0] == pytest.approx(0.0)
    assert stats.std[0] == pytest.approx(1.0)


def test_constant_and_never_seen_features_get_std_one():
    acc = DenseStatsAccumulator(("c", "n"), (False, False))
    acc.update(np.array([[4.0, np.nan], [4.0, np.nan]]))
    stats = acc.finish()
    assert stats.mean == (4.0, 0.0) and stats.std == (1.0, 1.0)
    np.testing.assert_array_equal(stats.apply(np.array([[5.0, 2.0]])), [[1.0, 2.0]])


def test_shape_is_checked():
    stats = DenseStats(("a",), (False,), (0.0,), (1.0,))
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        stats.apply(np.zeros((2, 2)))


def test_json_round_trip():
    stats = DenseStats(("a", "b"), (False, True), (1.5, -2.0), (0.5, 3.0))
    assert DenseStats.from_json(stats.to_json()) == stats
