"""The training window of a logical date: which event dates a model for ``ds`` learns from.

The last ``matrix.holdout_days`` days up to and including ``ds`` are held out of training:
offline evaluation scores the model on them. Training uses event dates in
``[first, cutoff]`` with ``cutoff = ds - holdout_days`` and ``first = cutoff -
lookback_days + 1``. Serving still sees the held-out days: the release's purchase filters
read every event up to ``ds``, and the hourly fold-in adds newer interactions.
"""

from __future__ import annotations

from datetime import date, timedelta

from conf import Settings


def training_window(settings: Settings, ds: str) -> tuple[str, str]:
    """``(first, cutoff)`` event dates (inclusive) of the training data for ``ds``."""
    cutoff = date.fromisoformat(ds) - timedelta(days=settings.matrix.holdout_days)
    first = cutoff - timedelta(days=settings.matrix.lookback_days - 1)
    return first.isoformat(), cutoff.isoformat()


def holdout_window(settings: Settings, ds: str) -> tuple[str, str] | None:
    """``(first, last)`` event dates of the holdout, or ``None`` when nothing is held out."""
    if settings.matrix.holdout_days == 0:
        return None
    _, cutoff = training_window(settings, ds)
    first = date.fromisoformat(cutoff) + timedelta(days=1)
    return first.isoformat(), ds


def dates_between(available: list[str], first: str, last: str) -> list[str]:
    """The partition values in ``available`` within ``[first, last]``."""
    return [d for d in available if first <= d <= last]
