"""Splitting examples for training and listing scored candidates per user.

:func:`split_by_user` holds out whole users for validation (a user's rows never straddle the
split); :func:`candidate_lists` turns scored example rows into ranked lists per user for
the validation metrics.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

log = logging.getLogger(__name__)


# -- splitting and scoring examples ---------------------------------------------------------
def split_by_user(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """``(train, valid)`` rows of ``table``: ``ceil(fraction * users)`` users, drawn with
    ``seed`` from the sorted user ids, hold all their rows out.

    Raises:
        ValueError: ``fraction`` is not in (0, 1), or there are fewer than two users.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    users = np.array(sorted(set(table.column("user_id").to_pylist())), dtype=object)
    if len(users) < 2:
        raise ValueError(f"splitting by user needs at least 2 users, got {len(users)}")
    n_valid = min(len(users) - 1, max(1, int(np.ceil(fraction * len(users)))))
    order = np.random.default_rng(seed).permutation(len(users))
    valid_users = pa.array(users[order[:n_valid]].tolist(), pa.string())
    held = pc.is_in(table.column("user_id"), value_set=valid_users)
    return table.filter(pc.invert(held)), table.filter(held)


def candidate_lists(user_ids: list[str], item_ids: list[str], scores: np.ndarray,
                    labels: np.ndarray, k: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Per user, the top-``k`` rows by score and the positive rows, for
    :mod:`evaluation.metrics`.

    Users without a positive row are left out (their NDCG is undefined).

    Args:
        user_ids, item_ids: (R,) the rows' user and item.
        scores: (R,) the ordering score, higher first (ties: item id ascending).
        labels: (R,) 1 for a positive row.
        k: list length.

    Returns:
        ``(recs, truth)``: int64 (U, k) item indices padded with -1, and the binary CSR
        (U, I) truth over the same item indices.
    """
    users = np.asarray(user_ids, dtype=object)
    items = np.asarray(item_ids, dtype=object)
    labels = np.asarray(labels) > 0
    keep_users = np.array(sorted(set(users[labels].tolist())), dtype=object)
    if len(keep_users) == 0:
        return np.full((0, k), -1, np.int64), sp.csr_matrix((0, 0))
    upos = {u: i for i, u in enumerate(keep_users)}
    u = np.fromiter((upos.get(x, -1) for x in users), np.int64, len(users))
    sel = u >= 0
    item_index = {it: i for i, it in enumerate(sorted(set(items[sel].tolist())))}
    it = np.fromiter((item_index[x] for x in items[sel]), np.int64, int(sel.sum()))
    u, s, lab = u[sel], np.asarray(scores, np.float64)[sel], labels[sel]
    order = np.lexsort((it, -s, u))
    u_sorted, it_sorted = u[order], it[order]
    starts = np.searchsorted(u_sorted, np.arange(len(keep_users)))
    pos = np.arange(len(u_sorted)) - starts[u_sorted]
    recs = np.full((len(keep_users), k), -1, np.int64)
    fits = pos < k
    recs[u_sorted[fits], pos[fits]] = it_sorted[fits]
    truth = sp.csr_matrix((np.ones(int(lab.sum())), (u[lab], it[lab])),
                          shape=(len(keep_users), len(item_index)))
    truth.sum_duplicates()
    truth.data[:] = 1.0
    return recs, truth
