"""User -> segment key, from the user's attributes and the configured segment rules.

A segment is the combination of one bucket per rule, keyed ``attr=bucket|attr=bucket`` in the
order of the rules, e.g. ``age=25-34|gender=F``. The popularity job groups users by this key
and the service and the candidate job compute the same key for a user (with no Spark), so
the function here is the only definition. With no rules every user is in :data:`ALL`.

Buckets: numeric rules (``bins``) give ``<e0``, ``e0-e1`` ... ``en+`` (integer edges are
labelled with inclusive ends: ``[18, 25)`` is ``18-24``); categorical rules give the value,
or :data:`OTHER` when ``values`` lists the kept ones and this is not one of them. A missing,
blank or non-numeric value is :data:`UNKNOWN`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence

from conf.retrieval import SegmentRule

ALL = "all"
"""The overall segment (every user)."""
UNKNOWN = "unknown"
OTHER = "other"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def bucket_labels(rule: SegmentRule) -> list[str]:
    """The ``len(rule.bins) + 1`` bucket labels of a numeric rule.

    Raises:
        ValueError: the rule has no ``bins``.
    """
    if rule.bins is None:
        raise ValueError(f"segment rule {rule.attribute!r} is categorical (no bins)")
    if rule.labels is not None:
        return list(rule.labels)
    edges = rule.bins
    integral = all(float(e).is_integer() for e in edges)
    inner = [
        f"{_fmt(lo)}-{_fmt(hi - 1)}" if integral and hi - lo > 1 else
        (_fmt(lo) if integral else f"{_fmt(lo)}-{_fmt(hi)}")
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return [f"<{_fmt(edges[0])}", *inner, f"{_fmt(edges[-1])}+"]


def bucket(value: str | None, rule: SegmentRule) -> str:
    """The bucket of one attribute ``value`` under ``rule`` (see the module docstring)."""
    if value is None or not str(value).strip():
        return UNKNOWN
    text = str(value).strip()
    if rule.bins is not None:
        try:
            number = float(text)
        except ValueError:
            return UNKNOWN
        if math.isnan(number):
            return UNKNOWN
        return bucket_labels(rule)[bisect_right(rule.bins, number)]
    if rule.values is not None and text not in rule.values:
        return OTHER
    return text


def segment_of(attributes: Mapping[str, str] | None, rules: Sequence[SegmentRule]) -> str:
    """The segment key of a user with these ``attributes`` (``None``: no attributes known).

    Example:
        ``segment_of({"age": "31", "gender": "F"}, [age bins 18,25,35,45,55; gender])``
        is ``"age=25-34|gender=F"``; with no rules it is ``"all"``.
    """
    if not rules:
        return ALL
    attrs = attributes or {}
    return "|".join(f"{rule.attribute}={bucket(attrs.get(rule.attribute), rule)}"
                    for rule in rules)
