"""Serve-time logic on a loaded release: filters, exclusions, boosts, blend, fallbacks.

Pure functions of (release, request, real-time state); no I/O. Lists are walked item by item
and stop as soon as ``n`` items pass, which on short lists beats vectorised numpy calls
with their fixed per-call cost.

An :data:`Entry` is ``(item_row, score, source, tag)``; the tag says why the item is there
(:mod:`serving_export.service.reasons`): the retrieval mask of a precomputed item, the item
row a ``similar`` (or item-anchored ``ann``) item resembles, :data:`SEGMENT_LIST` for an item
of the user's segment's popular list, else ``None``.

Sources, in the order they are tried for a user: the precomputed list of the surface
(``personalized``); without one, the nearest items to the user's vector in the release's
FAISS shards (``ann``); without a vector, the segment's then the overall popular list
(``popular``). Items similar to recent interactions are blended in (``similar``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import overload

import numpy as np

from serving_export.release.reader import Release
from serving_export.service.models import Filters
from serving_export.service.realtime import EMPTY, Recent
from serving_export.service.reasons import SEGMENT_LIST

Entry = tuple[int, float | None, str, int | None]

DEFAULT_FILTERS = Filters()

ANN_MAX_K = 1000
"""Most items one ANN answer asks the shards for (while filters keep rejecting them)."""


class ListHead(Sequence[Entry]):
    """Entries taken unchanged from a user's precomputed list: its first ``n`` (``picks`` an
    int) or the positions in ``picks`` (a tuple). Their JSON is a function of ``key`` in a
    given release, so the answer cache is looked up by it; the entries themselves are built
    only when read (on a cache miss)."""

    __slots__ = ("key", "_rel", "_entries")

    def __init__(self, rel: Release, surface: str, row: int, picks: int | tuple[int, ...]):
        self.key = (surface, row, picks)
        self._rel = rel
        self._entries: list[Entry] | None = None

    def columns(self) -> tuple[list[int], list[float], list[int]]:
        """The entries as columns: item rows, scores, retrieval masks."""
        surface, row, picks = self.key
        if isinstance(picks, int):
            return self._rel.topn_head(surface, row, picks)
        rows, scores, tags = self._rel.topn_head(surface, row, picks[-1] + 1)
        return [rows[k] for k in picks], [scores[k] for k in picks], [tags[k] for k in picks]

    def _get(self) -> list[Entry]:
        if self._entries is None:
            rows, scores, tags = self.columns()
            self._entries = list(zip(rows, scores, repeat("personalized"), tags))
        return self._entries

    def __len__(self) -> int:
        picks = self.key[2]
        return picks if isinstance(picks, int) else len(picks)

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> list[Entry]: ...

    def __getitem__(self, index: int | slice) -> Entry | list[Entry]:
        return self._get()[index]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._get())


@dataclass(frozen=True)
class Blend:
    """How items similar to a user's last interactions are blended in.

    Attributes:
        share: fraction of the ``n`` slots given to blended items (0 disables).
        seeds: most recent positive items used as seeds.
        per_seed: similar items considered per seed.
    """

    share: float = 0.2
    seeds: int = 3
    per_seed: int = 10


class _Gate:
    """Decides whether an item row may be shown to this user for this request."""

    __slots__ = ("check_available", "available", "excluded", "include", "exclude",
                 "nothing", "simple", "unavailable")

    def __init__(self, rel: Release, user_row: int, filters: Filters, recent: Recent):
        self.check_available = filters.available_only and not rel.all_available
        self.available = rel.available
        excluded: set[int] = set()
        if filters.exclude_recent and recent.items:
            excluded.update(r for r in map(rel.item_row, recent.items) if r >= 0)
        if filters.exclude_purchased and user_row >= 0:
            excluded.update(rel.purchased_rows(user_row))
        if user_row >= 0:  # negative feedback is not a filter: the user said no
            excluded.update(rel.blocked_rows(user_row))
        if recent.refused:  # ... and so is what they said since the release
            excluded.update(r for r in map(rel.item_row, recent.refused) if r >= 0)
        if filters.exclude_item_ids:
            excluded.update(r for r in map(rel.item_row, filters.exclude_item_ids) if r >= 0)
        self.excluded = excluded
        self.include = None
        self.nothing = False
        if filters.include_categories is not None:
            masks = [m for m in map(rel.category_mask, filters.include_categories)
                     if m is not None]
            if masks:
                self.include = np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]
            else:
                self.nothing = True  # only unknown categories: nothing can match
        self.exclude = None
        if filters.exclude_categories:
            masks = [m for m in map(rel.category_mask, filters.exclude_categories)
                     if m is not None]
            if masks:
                self.exclude = np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]
        self.unavailable = rel.unavailable_rows if self.check_available else frozenset()
        self.simple = (self.include is None and self.exclude is None
                       and (not self.check_available or rel.unavailable_rows is not None))
        if self.unavailable is None:
            self.unavailable = frozenset()

    def ok(self, row: int) -> bool:
        if row in self.excluded:
            return False
        if self.check_available and not self.available[row]:
            return False
        if self.include is not None and not self.include[row]:
            return False
        return not (self.exclude is not None and self.exclude[row])


def _take(gate: _Gate, taken: set[int], rows: Iterable[int], scores: Iterable[float],
          masks: Iterable[int | None], source: str, limit: int, out: list[Entry]) -> None:
    """Append up to ``limit`` acceptable, not yet taken entries to ``out``."""
    if limit <= 0 or gate.nothing:
        return
    remaining = limit
    add, append = taken.add, out.append
    if gate.simple:  # exclusions by id only (the common case), kept tight
        excluded, unavailable = gate.excluded, gate.unavailable
        for row, score, mask in zip(rows, scores, masks, strict=False):
            if row in taken or row in excluded or row in unavailable:
                continue
            add(row)
            append((row, score, source, mask))
            remaining -= 1
            if not remaining:
                return
        return
    ok = gate.ok
    for row, score, mask in zip(rows, scores, masks, strict=False):
        if row in taken or not ok(row):
            continue
        add(row)
        append((row, score, source, mask))
        remaining -= 1
        if not remaining:
            return


def _take_arrays(rel: Release, gate: _Gate, taken: set[int], items: np.ndarray,
                 scores: np.ndarray, masks: np.ndarray | None, source: str, limit: int,
                 out: list[Entry], tag: int | None = None) -> None:
    """:func:`_take` over arrays, converting only a prefix to Python unless more is needed.
    Without ``masks`` every entry gets ``tag``."""
    if limit <= 0 or gate.nothing or not len(items):
        return
    if rel.any_boost:
        rows_l, scores_l, masks_l = _boosted(rel, items, scores, masks, tag)
        _take(gate, taken, rows_l, scores_l, masks_l, source, limit, out)
        return
    end = len(out) + limit
    start, stop = 0, 2 * limit + len(gate.excluded) + 8
    while start < len(items) and len(out) < end:
        part = slice(start, stop)
        m = masks[part].tolist() if masks is not None else [tag] * len(items[part])
        _take(gate, taken, items[part].tolist(), scores[part].tolist(), m, source,
              end - len(out), out)
        start, stop = stop, stop + 4 * limit + 64


def _boosted(rel: Release, items: np.ndarray, scores: np.ndarray,
             masks: np.ndarray | None, tag: int | None = None) -> tuple[list, list, list]:
    """Order by boosted score ``s + |s| * (boost - 1)`` (``s * boost`` for s >= 0)."""
    s = scores.astype(np.float64)
    adj = s + np.abs(s) * (rel.boost[items].astype(np.float64) - 1.0)
    order = np.argsort(-adj, kind="stable")
    return (items[order].tolist(), adj[order].tolist(),
            masks[order].tolist() if masks is not None else [tag] * len(items))


def _similar_to_seeds(rel: Release, seeds: Iterable[str],
                      blend: Blend) -> tuple[list, list, list]:
    """Round-robin over the similar lists of the seed items (best of each first): item rows,
    scores, and the seed row each came from."""
    lists = []
    for item in seeds:
        row = rel.item_row(item)
        if row >= 0:
            items, scores = rel.similar(row)
            lists.append((items[: blend.per_seed].tolist(), scores[: blend.per_seed].tolist(),
                          row))
    rows: list[int] = []
    scores_out: list[float] = []
    tags: list[int] = []
    for k in range(max((len(i) for i, _, _ in lists), default=0)):
        for items, scores, seed in lists:
            if k < len(items):
                rows.append(items[k])
                scores_out.append(scores[k])
                tags.append(seed)
    return rows, scores_out, tags


def has_ann_vector(rel: Release, vectors: np.ndarray | None, has: np.ndarray | None,
                   row: int) -> bool:
    """Whether row ``row`` of ``vectors`` can query the release's FAISS shards."""
    return rel.ann is not None and vectors is not None and row >= 0 and bool(has[row])


def _ann_list(rel: Release, gate: _Gate, vector: np.ndarray, want: int,
              anchor: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Nearest items to ``vector`` from the shards, enough for ``want`` to pass ``gate``:
    the request asks for ``want`` plus the excluded items, and four times more (up to
    :data:`ANN_MAX_K`) while filters reject too many. ``anchor`` (an item row) is dropped."""
    k = want + len(gate.excluded) + 16 + (anchor >= 0)
    while True:
        items, scores = rel.ann_search(vector, k)
        if anchor >= 0:
            keep = items != anchor
            items, scores = items[keep], scores[keep]
        if gate.simple or len(items) < k - (anchor >= 0) or k >= ANN_MAX_K:
            return items, scores
        ok = gate.ok
        if sum(1 for row in items.tolist() if ok(row)) >= want:
            return items, scores
        k = min(4 * k, ANN_MAX_K)


def _interleave(main: list[Entry], blended: list[Entry], n: int) -> list[Entry]:
    """Put blended entries at evenly spaced slots (every ``n // k``-th) among ``main``."""
    if not blended:
        return main[:n]
    step = max(1, n // len(blended))
    out: list[Entry] = []
    mi = bi = 0
    while len(out) < n and (mi < len(main) or bi < len(blended)):
        if bi < len(blended) and (len(out) % step == step - 1 or mi >= len(main)):
            out.append(blended[bi])
            bi += 1
        else:
            out.append(main[mi])
            mi += 1
    return out


def recommend_user(rel: Release, surface: str, user_id: str, n: int,
                   filters: Filters | None, recent: Recent | None,
                   blend: Blend) -> tuple[str, Sequence[Entry], bool]:
    """A user's answer.

    Args:
        rel: the live release; surface: one of ``rel.surfaces``; n: items wanted (>= 1).
        filters: request filters (``None``: defaults).
        recent: real-time state, ``None`` when the store was unavailable.
        blend: blend parameters.

    Returns:
        ``(source, entries, backfilled)``: ``personalized`` or ``popular``; at most ``n``
        entries; whether popular items (segment, then overall) filled a short list.
    """
    filters = filters or DEFAULT_FILTERS
    recent = recent or EMPTY
    row = rel.user_row(user_id)
    gate = _Gate(rel, row, filters, recent)
    k_blend = 0
    seeds: tuple[str, ...] = ()
    if filters.blend_similar and recent.seeds and blend.share > 0 and blend.seeds > 0:
        seeds = recent.seeds[: blend.seeds]
        k_blend = min(n - 1, int(round(n * blend.share))) if n > 1 else 0
    if row >= 0 and not k_blend and gate.simple and not gate.nothing and not rel.any_boost:
        # The common case: when the list's first items hold no repeat, the answer is its
        # first n acceptable items (what the walk below would pick), found in one pass.
        excluded, unavailable = gate.excluded, gate.unavailable
        head = rel.topn_rows(surface, row, n + len(excluded) + 8)
        first = head[:n]
        if (len(first) == n and len(set(first)) == n and excluded.isdisjoint(first)
                and unavailable.isdisjoint(first)):
            return "personalized", ListHead(rel, surface, row, n), False
        if len(set(head)) == len(head):
            keep = [k for k, r in enumerate(head) if r not in excluded and r not in unavailable]
            if len(keep) >= n:
                return "personalized", ListHead(rel, surface, row, tuple(keep[:n])), False
    taken: set[int] = set()
    if row >= 0:
        items, scores, masks = rel.topn(surface, row)
    else:
        items = scores = masks = None
    tag = None
    segment = rel.popular_for(row)[2]
    if items is not None and len(items):
        source = "personalized"
    elif has_ann_vector(rel, rel.user_vectors, rel.user_has_vector, row) and not gate.nothing:
        items, scores = _ann_list(rel, gate, rel.user_vectors[row], n)
        masks = None
        source = "ann"
    else:
        items, scores, _ = rel.popular_for(row)
        masks = None
        source = "popular"
        tag = SEGMENT_LIST if segment is not None else None
    main: list[Entry] = []
    blended: list[Entry] = []
    if k_blend:
        # Take the main list's share first so blended items do not displace its head.
        _take_arrays(rel, gate, taken, items, scores, masks, source, n - k_blend, main, tag)
        sim_rows, sim_scores, sim_tags = _similar_to_seeds(rel, seeds, blend)
        _take(gate, taken, sim_rows, sim_scores, sim_tags, "similar", k_blend, blended)
        if len(blended) < k_blend:
            _take_arrays(rel, gate, taken, items, scores, masks, source,
                         k_blend - len(blended), main, tag)
    else:
        _take_arrays(rel, gate, taken, items, scores, masks, source, n, main, tag)
    out = _interleave(main, blended, n)
    if len(out) >= n:
        return source, out, False
    backfilled = False
    # Short list: fill from the segment's popular list (if not used already), then overall.
    fills = []
    if source != "popular":
        fills.append((*rel.popular_for(row)[:2], SEGMENT_LIST if segment is not None else None))
    if segment is not None or source != "popular":
        fills.append((*rel.overall_popular, None))
    for pop_items, pop_scores, pop_tag in fills:
        if len(out) >= n:
            break
        before = len(out)
        _take_arrays(rel, gate, taken, pop_items, pop_scores, None, "popular", n - len(out),
                     out, pop_tag)
        backfilled = backfilled or len(out) > before
    return source, out, backfilled


def similar_items(rel: Release, item_row: int, n: int,
                  filters: Filters | None) -> tuple[str, list[Entry]]:
    """Items similar to ``item_row`` (never itself): its precomputed neighbour list
    (``similar``); without one, its nearest items in the FAISS shards by its vector,
    collaborative or content-predicted (``ann``); else overall popular items.

    Only the item-side filters apply (availability, categories, excluded ids).
    """
    filters = filters or DEFAULT_FILTERS
    gate = _Gate(rel, -1, filters, EMPTY)
    taken = {item_row}
    out: list[Entry] = []
    items, scores = rel.similar(item_row)
    if len(items):
        _take_arrays(rel, gate, taken, items, scores, None, "similar", n, out, item_row)
        if out:
            return "similar", out
    elif has_ann_vector(rel, rel.item_vectors, rel.item_has_vector, item_row) \
            and not gate.nothing:
        items, scores = _ann_list(rel, gate, rel.item_vectors[item_row], n, anchor=item_row)
        _take_arrays(rel, gate, taken, items, scores, None, "ann", n, out, item_row)
        if out:
            return "ann", out
    items, scores, _ = rel.popular_for(-1)
    _take_arrays(rel, gate, taken, items, scores, None, "popular", n, out)
    return "popular", out
