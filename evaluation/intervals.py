"""95% bootstrap intervals over users, for one metric and for a paired difference.

Shapes: N users. A metric's per-user values (NaN for users without truth, who are left out)
are resampled with replacement, R times; the interval is the percentile range of the R
resampled means (Efron's percentile bootstrap). A paired difference resamples the same
users for both lists, so a user's own difficulty cancels out: the interval of
``mean(a - b)``. Resamples are drawn in blocks so memory stays at ``block x N`` counts.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
"""Bootstrap resamples per interval."""
BLOCK = 100
"""Resamples drawn at once."""


def bootstrap_interval(
    values: np.ndarray, seed: int, level: float = 0.95, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (N,), NaNs left out.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when no value is finite.

    Raises:
        ValueError: ``level`` outside (0, 1) or ``resamples`` < 1.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, BLOCK):
        stop = min(start + BLOCK, resamples)
        picks = rng.integers(0, finite.size, size=(stop - start, finite.size))
        means[start:stop] = finite[picks].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_interval(
    a: np.ndarray, b: np.ndarray, seed: int, level: float = 0.95, resamples: int = RESAMPLES
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users where both are defined, with its bootstrap interval.

    Args:
        a, b: per-user values (N,) of two lists on the same users.

    Returns:
        ``(mean, low, high)``.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users, got shapes {a.shape}, {b.shape}")
    diff = a - b
    mean = float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan")
    return (mean, *bootstrap_interval(diff, seed, level, resamples))
