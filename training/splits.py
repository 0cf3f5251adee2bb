"""Splitting examples for training and listing scored candidates per user.

:func:`user_split` holds out whole users for validation (a user's rows never straddle the
split) and draws both sides within example budgets; :func:`candidate_lists` turns scored
example rows into ranked lists per user for the validation metrics.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

log = logging.getLogger(__name__)


# -- splitting and scoring examples ---------------------------------------------------------
def rows_per_user(batches) -> tuple[np.ndarray, np.ndarray]:
    """``(users, rows)``: the distinct ``user_id`` values of a stream of Arrow batches,
    sorted, and each one's row count; memory grows with the users, not the rows."""
    parts = []
    for batch in batches:
        if batch.num_rows:
            counts = pc.value_counts(batch.column("user_id"))
            parts.append(pa.table({"user_id": counts.field("values"),
                                   "n": counts.field("counts")}))
    if not parts:
        return np.array([], dtype=object), np.array([], np.int64)
    total = (pa.concat_tables(parts).group_by("user_id").aggregate([("n", "sum")])
             .sort_by("user_id"))
    return (np.asarray(total.column("user_id").to_pylist(), dtype=object),
            total.column("n_sum").to_numpy().astype(np.int64))


def user_split(users: np.ndarray, rows: np.ndarray, fraction: float, seed: int,
               max_train: int | None = None, max_valid: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(train_users, valid_users)`` within example budgets: ``ceil(fraction * users)``
    users held out, drawn with ``seed`` from the sorted ids, then each side keeps its users
    in drawn order while their rows fit the side's budget (at least one user each; None: no budget).

    Args:
        users: (U,) distinct user ids, sorted.
        rows: (U,) each user's example rows.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    if len(users) < 2:
        raise ValueError(f"splitting by user needs at least 2 users, got {len(users)}")
    n_valid = min(len(users) - 1, max(1, int(np.ceil(fraction * len(users)))))
    order = np.random.default_rng(seed).permutation(len(users))

    def within(drawn: np.ndarray, budget: int | None) -> np.ndarray:
        if budget is None:
            return drawn
        fits = np.searchsorted(np.cumsum(rows[drawn]), budget, side="right")
        return drawn[: max(1, int(fits))]

    return users[within(order[n_valid:], max_train)], users[within(order[:n_valid], max_valid)]


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
