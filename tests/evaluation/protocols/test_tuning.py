"""Grid expansion and the coordinate search."""

from __future__ import annotations

import pytest

from evaluation.protocols.tuning import coordinate_search, expand_grid


def test_expand_grid_varies_lists_and_keeps_scalars():
    points = expand_grid({"b": [1, 2], "a": [5, 6, 7], "fixed": 3})
    assert len(points) == 6
    assert {"a": 7, "b": 2, "fixed": 3} in points
    with pytest.raises(ValueError, match="empty"):
        expand_grid({"a": []})


def test_coordinate_search_finds_a_separable_optimum_with_few_calls():
    calls = []

    def value(point):
        return -((point["a"] - 4) ** 2) - (point["b"] - 0) ** 2

    def objective(point):
        calls.append(dict(point))
        return value(point)

    coordinate_search({"a": list(range(9)), "b": list(range(5)), "c": 1}, objective)
    best = max(calls, key=value)
    assert (best["a"], best["b"]) == (4, 0)
    assert all(c["c"] == 1 for c in calls)
    assert len({(c["a"], c["b"]) for c in calls}) < 9 * 5
