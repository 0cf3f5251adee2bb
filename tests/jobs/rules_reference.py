"""The business rules as first written, one user at a time over Python lists and dicts: the
specification that :mod:`jobs.rules` (vectorized over blocks of users) must reproduce
exactly (``tests/jobs/test_rules.py`` compares them on random inputs).

The order of application is the one :mod:`jobs.rules` describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conf.recs import SurfaceSettings

EXPLORATION = "exploration"


@dataclass(frozen=True)
class DictMeta:
    """Serve-relevant item attributes, by item id."""

    available: dict[str, bool]
    boost: dict[str, float]
    category: dict[str, str | None]


def diversify(items: list[str], meta: DictMeta, max_per_category: int, window: int
              ) -> list[str]:
    """Greedy category cap over the first ``window`` slots; deferred items follow in order."""
    if max_per_category <= 0:
        return items
    counts: dict[str | None, int] = {}
    head: list[str] = []
    deferred: list[str] = []
    for i, item in enumerate(items):
        if len(head) >= window:
            return head + deferred + items[i:]
        cat = meta.category.get(item)
        if cat is not None and counts.get(cat, 0) >= max_per_category:
            deferred.append(item)
            continue
        counts[cat] = counts.get(cat, 0) + 1
        head.append(item)
    return head + deferred


def apply_surface(items: list[str], scores: list[float], sources: list[list[str]],
                  meta: DictMeta, rule: SurfaceSettings, rng: np.random.Generator,
                  blocked: set[str] = frozenset()) -> list[tuple[str, float, list[str]]]:
    """The surface's final list for one user: ``[(item, score, sources)]`` best first.

    Args:
        items, scores, sources: the user's candidates (any order).
        meta: availability, boost and category per item.
        rule: the surface's rules.
        rng: the user's generator (see :func:`user_rng`).
        blocked: items this surface must not show (e.g. the home feed's first slots).
    """
    rows = {}
    for item, score, src in zip(items, scores, sources, strict=True):
        if item in blocked or (rule.drop_unavailable and not meta.available.get(item, True)):
            continue
        boost = meta.boost.get(item, 1.0) if rule.apply_boost else 1.0
        rows[item] = (float(score) * boost, list(src))
    ranked = sorted(rows, key=lambda it: (-rows[it][0], it))
    ranked = diversify(ranked, meta, rule.max_per_category, rule.diversity_window)
    window = min(rule.diversity_window, rule.n, len(ranked))
    n_explore = int(round(rule.exploration_share * window))
    tail = ranked[window:]
    n_explore = min(n_explore, len(tail))
    out = [(it, rows[it][0], rows[it][1]) for it in ranked]
    if n_explore:
        slots = np.sort(rng.choice(window, size=n_explore, replace=False))
        picks = rng.choice(len(tail), size=n_explore, replace=False)
        head = out[:window]
        explored = [tail[p] for p in picks]
        for slot, item in zip(slots, explored, strict=True):
            head[slot] = (item, rows[item][0], [*rows[item][1], EXPLORATION])
        rest = [row for row in out[window:] if row[0] not in set(explored)]
        replaced = [row for i, row in enumerate(out[:window]) if i in set(slots.tolist())]
        out = head + replaced + rest
    return out[: rule.n]
