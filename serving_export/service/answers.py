"""Hand-written JSON for hot-path answers (same shapes as the pydantic models).

Building the string directly from cached item-id literals avoids creating and validating a
model per item; ids that come from the request are quoted by :func:`string` (``json.dumps``
unless they are plain printable ASCII).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

from serving_export.release.reader import Release
from serving_export.service import reasons
from serving_export.service.recommend import Entry, ListHead

_dumps = json.dumps


def string(value: str) -> str:
    """``value`` as a JSON string literal (plain printable ASCII without quotes or
    backslashes, as ids usually are, is quoted directly)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return _dumps(value)


def num(value: float | None) -> str:
    """A finite float as a short JSON number (6 significant digits), or ``null``."""
    return "null" if value is None else f"{value:.6g}"


@lru_cache(maxsize=256)
def _template(n: int) -> str:
    """``%`` template of an items array of ``n`` entries (head, score, tail each)."""
    return "[" + ",".join(["%s%.6g%s"] * n) + "]"


def items_json(rel: Release, entries: Sequence[Entry]) -> str:
    """The ``items`` array of an answer, from the release's cached per-item heads
    (``{"item_id":...,"score":``) and per-(source, retrieval) tails. Whole arrays are cached
    per release too (up to ``rel.answer_cache_limit``, then the cache starts over), so a
    repeated answer costs one hash lookup."""
    limit = rel.answer_cache_limit
    if limit:
        key = entries.key if type(entries) is ListHead else tuple(entries)
        cached = rel.answer_cache.get(key)
        if cached is not None:
            return cached
    if type(entries) is ListHead:
        # Rows of the precomputed list: every score is a number, one template fills all.
        rows, scores, masks = entries.columns()
        values: list[str | float] = [""] * (3 * len(rows))
        values[0::3] = rel.item_heads(rows)
        values[1::3] = scores
        values[2::3] = reasons.item_tails(rel, "personalized", masks)
        text = _template(len(rows)) % tuple(values)
    elif not entries:
        text = "[]"
    else:
        rows, scores, sources, tags = zip(*entries, strict=True)
        tail = reasons.item_tail
        values = [""] * (3 * len(rows))
        values[0::3] = rel.item_heads(list(rows))
        values[2::3] = [tail(rel, source, tag)
                        for source, tag in zip(sources, tags, strict=True)]
        if None in scores:  # popular backfill may lack a score: null
            values[1::3] = ["null" if v is None else f"{v:.6g}" for v in scores]
            text = "[" + ",".join(["%s%s%s"] * len(rows)) % tuple(values) + "]"
        else:
            values[1::3] = scores
            text = _template(len(rows)) % tuple(values)
    if limit:
        if len(rel.answer_cache) >= limit:
            rel.answer_cache.clear()
        rel.answer_cache[key] = text
    return text


def user_answer(rel: Release, user_id: str, surface: str, source: str, degraded: bool,
                entries: Sequence[Entry]) -> str:
    """JSON of :class:`~serving_export.service.models.UserRecommendations`."""
    return (f'{{"user_id":{string(user_id)},"surface":"{surface}","release_id":'
            f'{rel.id_json},"source":"{source}","degraded":'
            f'{"true" if degraded else "false"},"items":{items_json(rel, entries)}}}')


def similar_answer(rel: Release, item_id: str, source: str, degraded: bool,
                   entries: Sequence[Entry]) -> str:
    """JSON of :class:`~serving_export.service.models.SimilarItems`."""
    return (f'{{"item_id":{string(item_id)},"release_id":{rel.id_json},"source":'
            f'"{source}","degraded":{"true" if degraded else "false"},"items":'
            f'{items_json(rel, entries)}}}')


def batch_answer(rel: Release, degraded: bool, results: Sequence[str]) -> str:
    """JSON of :class:`~serving_export.service.models.BatchResponse` from user answers."""
    return (f'{{"release_id":{rel.id_json},"degraded":{"true" if degraded else "false"},'
            f'"results":[{",".join(results)}]}}')


def rerank_answer(rel: Release, user_id: str, source: str, degraded: bool,
                  rows: Sequence[tuple[str, float | None, bool]]) -> str:
    """JSON of :class:`~serving_export.service.models.RerankResponse`."""
    item_source = "reranked" if source == "reranked" else "popular"
    reason = _dumps(reasons.RERANKED if source == "reranked" else reasons.POPULAR)
    items = ",".join(
        f'{{"item_id":{_dumps(item)},"score":{num(score)},"source":"{item_source}",'
        f'"reason":{reason},"known":{"true" if known else "false"}}}'
        for item, score, known in rows
    )
    return (f'{{"user_id":{string(user_id)},"release_id":{rel.id_json},"source":'
            f'"{source}","degraded":{"true" if degraded else "false"},"items":[{items}]}}')
