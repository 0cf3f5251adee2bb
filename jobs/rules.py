"""Business rules and diversity over blocks of users' ranked candidates: numpy, no Spark.

Order of application (per surface): drop unavailable items and items another surface already
shows in its first slots; multiply scores by promotion boosts and re-sort; cap how many items
of one category may appear in the first ``diversity_window`` slots (greedy, deferred items
keep their order after the window); then give ``round(exploration_share * window)`` slots of
the window, chosen by a seeded RNG, to random picks from below the window (epsilon-greedy
exploration, marked with the source ``exploration``); keep the first ``n``.

Filtering, boosting and ordering are done for a whole block of users at once (one
``lexsort``); only the diversity cap and exploration walk a user's list in Python, and only
as far as its first ``n`` slots need (the cap stops at the window, exploration draws
positions). With neither rule a surface is pure numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf.recs import SurfaceSettings

EXPLORATION = "exploration"


@dataclass(frozen=True)
class ItemMeta:
    """Serve-relevant item attributes as arrays over ``item_ids`` (sorted); items not in it
    are available, unboosted and without a category."""

    item_ids: pa.Array
    available: np.ndarray
    """(N,) bool."""
    boost: np.ndarray
    """(N,) float64."""
    category: np.ndarray
    """(N,) int64 code of the item's first category (the unit of the diversity cap), -1
    for none."""

    @classmethod
    def from_dicts(cls, available: Mapping[str, bool], boost: Mapping[str, float],
                   category: Mapping[str, str | None]) -> ItemMeta:
        """From per-item mappings (an item missing from one takes that one's default)."""
        ids = sorted({*available, *boost, *category})
        names = sorted({c for c in category.values() if c is not None})
        code = {c: k for k, c in enumerate(names)}
        return cls(item_ids=pa.array(ids, pa.string()),
                   available=np.array([available.get(i, True) for i in ids], bool),
                   boost=np.array([boost.get(i, 1.0) for i in ids], np.float64),
                   category=np.array([code.get(category.get(i), -1) for i in ids], np.int64))

    def rows(self, items: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(B,) int64 row of each item in ``item_ids``, -1 when absent."""
        found = pc.index_in(items, value_set=self.item_ids)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def user_rng(seed: int, user_id: str, ds: str, surface: str) -> np.random.Generator:
    """A generator seeded by (seed, user, date, surface): reruns pick the same items."""
    key = zlib.crc32(f"{user_id}|{ds}|{surface}".encode())
    return np.random.default_rng([seed, key])


@dataclass(frozen=True)
class Block:
    """The candidate rows of a block of users, coded for the rules.

    Attributes:
        user: (R,) int64 user number (0..U-1) of each row.
        user_ids: (U,) the users' ids.
        item: (R,) int64 code of each row's item, in item id order (ties break on it).
        score: (R,) float64 the score that orders the candidates.
        available, boost, category: (R,) the row's item attributes.
    """

    user: np.ndarray
    user_ids: np.ndarray
    item: np.ndarray
    score: np.ndarray
    available: np.ndarray
    boost: np.ndarray
    category: np.ndarray

    @classmethod
    def of(cls, users: pa.Array, items: pa.Array, scores: pa.Array, meta: ItemMeta) -> Block:
        """From the columns of candidate rows (any order) and the item attributes."""
        user_ids, user = np.unique(np.asarray(users.to_pylist(), dtype=object),
                                   return_inverse=True)
        _, item = np.unique(np.asarray(items.to_pylist(), dtype=object), return_inverse=True)
        rows = meta.rows(items)
        known = rows >= 0
        safe = np.maximum(rows, 0)
        return cls(user=user.astype(np.int64), user_ids=user_ids, item=item.astype(np.int64),
                   score=scores.to_numpy(zero_copy_only=False).astype(np.float64),
                   available=np.where(known, meta.available[safe], True),
                   boost=np.where(known, meta.boost[safe], 1.0),
                   category=np.where(known, meta.category[safe], -1))


@dataclass(frozen=True)
class SurfaceRows:
    """A surface's lists for a block: ``rows`` (indices into the block's rows) in list
    order, user by user; ``rank`` from 1 per user; the row's final ``score``; ``explored``
    marks the exploration picks."""

    rows: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    explored: np.ndarray


def _diversified(order: np.ndarray, category: np.ndarray, cap: int, window: int) -> list[int]:
    """Greedy category cap over the first ``window`` slots of ``order`` (rows, best first);
    deferred rows follow in order, then the rest."""
    counts: dict[int, int] = {}
    head: list[int] = []
    deferred: list[int] = []
    for i, row in enumerate(order.tolist()):
        if len(head) >= window:
            return head + deferred + order[i:].tolist()
        cat = int(category[row])
        if cat >= 0 and counts.get(cat, 0) >= cap:
            deferred.append(row)
            continue
        counts[cat] = counts.get(cat, 0) + 1
        head.append(row)
    return head + deferred


def _one_user(order: np.ndarray, block: Block, rule: SurfaceSettings,
              rng: Callable[[], np.random.Generator]) -> tuple[list[int], set[int]]:
    """One user's list (rows, best first, at most ``rule.n``) and its exploration picks."""
    ranked = (_diversified(order, block.category, rule.max_per_category,
                           rule.diversity_window)
              if rule.max_per_category > 0 else order.tolist())
    window = min(rule.diversity_window, rule.n, len(ranked))
    tail = len(ranked) - window
    n_explore = min(int(round(rule.exploration_share * window)), tail)
    if not n_explore:
        return ranked[: rule.n], set()
    gen = rng()
    slots = np.sort(gen.choice(window, size=n_explore, replace=False)).tolist()
    picks = gen.choice(tail, size=n_explore, replace=False).tolist()
    explored = [ranked[window + p] for p in picks]
    head = ranked[:window]
    replaced = [head[s] for s in slots]
    for slot, row in zip(slots, explored, strict=True):
        head[slot] = row
    taken = set(explored)
    out = head + replaced
    for row in ranked[window:]:
        if len(out) >= rule.n:
            break
        if row not in taken:
            out.append(row)
    return out[: rule.n], taken


def apply_surface(block: Block, rule: SurfaceSettings,
                  rng: Callable[[int], np.random.Generator],
                  blocked: np.ndarray | None = None) -> SurfaceRows:
    """The surface's lists of every user of ``block``.

    Args:
        block: the users' candidates.
        rule: the surface's rules.
        rng: user number -> that user's generator (see :func:`user_rng`); called only for
            users whose list gets exploration picks.
        blocked: (R,) bool, rows this surface must not show (e.g. the home feed's first
            slots); None: none.
    """
    keep = np.ones(len(block.user), bool) if blocked is None else ~blocked
    if rule.drop_unavailable:
        keep &= block.available
    score = block.score * block.boost if rule.apply_boost else block.score.copy()
    idx = np.flatnonzero(keep)
    order = idx[np.lexsort((block.item[idx], -score[idx], block.user[idx]))]
    users = block.user[order]
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1] if len(order) else \
        np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(order)].astype(np.int64) if len(order) else starts
    per_user = rule.max_per_category > 0 or rule.exploration_share > 0
    if not per_user:  # order and cut: pure numpy
        position = np.arange(len(order)) - np.repeat(starts, ends - starts)
        take = position < rule.n
        rows = order[take]
        return SurfaceRows(rows, (position[take] + 1).astype(np.int32), score[rows],
                           np.zeros(len(rows), bool))
    lists, explored = [], []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        user = int(users[s])
        rows, taken = _one_user(order[s:e], block, rule, lambda u=user: rng(u))
        lists.append(np.asarray(rows, np.int64))
        explored.append(np.fromiter((r in taken for r in rows), bool, len(rows)))
    rows = np.concatenate(lists) if lists else np.zeros(0, np.int64)
    rank = np.concatenate([np.arange(1, len(x) + 1) for x in lists]) if lists else \
        np.zeros(0, np.int64)
    return SurfaceRows(rows, rank.astype(np.int32), score[rows],
                       np.concatenate(explored) if explored else np.zeros(0, bool))


def blocked_by(block: Block, shown: SurfaceRows, first: int) -> np.ndarray:
    """(R,) bool: rows whose (user, item) another surface shows in its first ``first``
    slots."""
    top = shown.rows[shown.rank <= first]
    width = int(block.item.max(initial=0)) + 1
    keys = block.user * width + block.item
    return np.isin(keys, keys[top])


def with_exploration(sources: pa.Array, explored: np.ndarray) -> pa.Array:
    """``sources`` (list<string>) with ``exploration`` appended to the marked rows."""
    if not explored.any():
        return sources
    sources = sources.cast(pa.list_(pa.string()))
    lengths = pc.fill_null(pc.list_value_length(sources), 0).to_numpy(
        zero_copy_only=False).astype(np.int64)
    flat = np.asarray(pc.list_flatten(sources).to_pylist(), dtype=object)
    ends = np.cumsum(lengths)
    values = np.insert(flat, ends[explored], EXPLORATION)
    offsets = np.r_[0, np.cumsum(lengths + explored)].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.tolist(), pa.string()))
