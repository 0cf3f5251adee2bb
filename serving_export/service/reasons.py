"""Why an answer's item is there, in words an app can show beside it.

Every item of a service answer carries ``source`` (which list it came from) and ``reason``.
The reason is a function of the source and one integer tag (see
:data:`serving_export.service.recommend.Entry`): the retrieval strategies of a precomputed
item, the item an ANN or similar item resembles, the popular list it came from. The JSON
tail of an answer item (source, retrieval strategies, reason) is built once per release,
source and tag (:func:`item_tail`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from serving_export.release.reader import Release

STRATEGY_REASONS: tuple[tuple[str, str], ...] = (
    ("session", "often viewed together with items you viewed"),
    ("ann", "liked by people with tastes like yours"),
    ("content", "like other items you viewed"),
    ("popular", "popular with people like you"),
)
"""Retrieval strategy -> reason of a precomputed item, the first that found it wins."""

PICKED = "picked for you"
ANN = "matches your taste"
POPULAR = "popular right now"
POPULAR_SEGMENT = "popular with people like you"
RERANKED = "ordered by your taste"
SIMILAR_TO = "similar to {title}"

SEGMENT_LIST = 0
"""Tag of a popular item taken from the user's segment list (``None``: the overall list)."""


def for_strategies(names: Sequence[str]) -> str:
    """Reason of a precomputed item found by the retrieval strategies ``names``."""
    for strategy, reason in STRATEGY_REASONS:
        if strategy in names:
            return reason
    return PICKED


def for_entry(source: str, tag: int | None, strategies: Sequence[str], title: str | None) -> str:
    """Reason of one answer item.

    Args:
        source: ``personalized``, ``ann``, ``similar``, ``popular`` or ``reranked``.
        tag: the entry's tag (retrieval mask, anchor item row, popular list).
        strategies: the retrieval strategies of ``tag`` (personalized items).
        title: the title of the anchor item ``tag`` (ann with an anchor, similar).
    """
    if source == "personalized":
        return for_strategies(strategies)
    if source in ("similar", "ann") and title is not None:
        return SIMILAR_TO.format(title=title)
    if source == "ann":
        return ANN
    if source == "popular":
        return POPULAR_SEGMENT if tag == SEGMENT_LIST else POPULAR
    if source == "reranked":
        return RERANKED
    return PICKED


TAIL_CACHE = 1 << 16
"""JSON tails each loaded release remembers per source (tags may be item rows)."""


def item_tail(rel: Release, source: str, tag: int | None) -> str:
    """Cached JSON tail of an answer item: source, retrieval strategies (personalized items)
    and reason."""
    by_tag = rel.tail_cache.setdefault(source, {})
    cached = by_tag.get(tag)
    if cached is None:
        if len(by_tag) >= TAIL_CACHE:
            by_tag.clear()
        strategies: tuple[str, ...] = ()
        retrieval = title = None
        if source == "personalized" and tag is not None:
            strategies = rel.sources_names(tag)
            retrieval = rel.sources_json(tag)
        elif source in ("similar", "ann") and tag is not None:
            title = rel.title(tag)
        reason = json.dumps(for_entry(source, tag, strategies, title))
        cached = (f',"source":"{source}"'
                  + (f',"retrieval":{retrieval}' if retrieval is not None else "")
                  + f',"reason":{reason}}}')
        by_tag[tag] = cached
    return cached


def item_tails(rel: Release, source: str, tags: list[int]) -> list[str]:
    """:func:`item_tail` of each tag, for one source."""
    by_tag = rel.tail_cache.setdefault(source, {})
    tails = [by_tag.get(t) for t in tags]
    if not all(tails):
        tails = [t or item_tail(rel, source, g) for t, g in zip(tails, tags, strict=True)]
    return tails  # type: ignore[return-value]
