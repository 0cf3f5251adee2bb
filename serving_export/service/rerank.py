"""``POST /recommendations/rerank``: a user's order over given items (e.g. search results)."""

from __future__ import annotations

import numpy as np

from serving_export.release.reader import Release


def rerank(rel: Release, user_id: str, item_ids: list[str]) -> tuple[str, list[tuple]]:
    """Order ``item_ids`` for the user by dot product of their release embeddings.

    Returns:
        ``(source, rows)`` with rows ``(item_id, score or None, known)``: known items by
        score descending, then items without a vector (``known`` false) in request order.
        An unknown user (or a release without embeddings) gets the items ordered by their
        popularity in the user's segment (``source`` ``popular``; items not in that list
        follow with a null score).
    """
    ids = list(dict.fromkeys(item_ids))
    rows = rel.item_rows(ids)
    user_row = rel.user_row(user_id)
    has_vectors = rel.user_vectors is not None and rel.item_vectors is not None
    if has_vectors and user_row >= 0 and rel.user_has_vector[user_row]:
        known = (rows >= 0)
        known[known] = rel.item_has_vector[rows[known]]
        scores = np.zeros(len(ids), dtype=np.float64)
        if known.any():
            scores[known] = rel.item_vectors[rows[known]] @ rel.user_vectors[user_row]
        order = np.flatnonzero(known)[np.argsort(-scores[known], kind="stable")]
        out = [(ids[i], float(scores[i]), True) for i in order.tolist()]
        out += [(ids[i], None, False) for i in np.flatnonzero(~known).tolist()]
        return "reranked", out
    pop_items, pop_scores, _ = rel.popular_for(user_row)
    pop = dict(zip(pop_items.tolist(), pop_scores.tolist(), strict=True))
    ranked = sorted((i for i in range(len(ids)) if rows[i] >= 0 and int(rows[i]) in pop),
                    key=lambda i: -pop[int(rows[i])])
    rest = [i for i in range(len(ids)) if rows[i] >= 0 and int(rows[i]) not in pop]
    unknown = [i for i in range(len(ids)) if rows[i] < 0]
    out = [(ids[i], pop[int(rows[i])], True) for i in ranked]
    out += [(ids[i], None, True) for i in rest]
    out += [(ids[i], None, False) for i in unknown]
    return "popular", out
