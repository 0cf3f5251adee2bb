"""The temporal holdout of a date: who is evaluated, what is relevant, what is excluded.

Shapes: U evaluated users, I items of the index, R rows of a long table, K list length.

The holdout is the ``silver/interactions`` events with ``cutoff < event_date <= ds`` (see
:func:`algorithms.window.holdout_window`); the model of ``ds`` trained on ``gold/training_matrix``
rows up to the cutoff. For each user with a positive holdout event:

- truth: the items of their positive holdout events (event types and the minimum rating in
  ``offline_eval``), nothing else excluded;
- seen: the items of their training-matrix rows, which the model and the popularity
  baseline never recommend (the candidate stages exclude consumed items themselves);
- rejected: the items they hid, marked not interested or disliked during the holdout
  (recommending one counts against a list);
- slices: ``cold_users`` (no training row), ``heavy_users`` (training items at or above the
  ``heavy_user_quantile`` of training users), ``cold_items`` (the truth restricted to items
  no training row mentions).

Items are indexed catalogue first (every item that can be recommended, rows ``0 .. C-1``),
then items only the truth mentions, so catalogue coverage is taken over ``C`` items.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from conf.gate import OfflineEvalSettings
from conf.pipeline import NEGATIVE_FEEDBACK
from evaluation.ids import IdsLike, id_array, rows_in
from evaluation.metrics_input import PAD

log = logging.getLogger(__name__)

SLICES = ("all", "cold_users", "heavy_users", "cold_items")
"""Slice names, in report order."""


class ItemIndex:
    """Item ids <-> rows: the ``C`` catalogue items first (sorted), then the rest (sorted).

    The ids stay one Arrow array (no Python object per item); lookups run in Arrow.

    Attributes:
        n_catalogue: C, the number of recommendable items (rows ``0 .. C-1``).
    """

    def __init__(self, catalogue: IdsLike, others: IdsLike = ()) -> None:
        cat = _sorted_unique(catalogue)
        rest = _sorted_unique(others)
        rest = rest.filter(pc.invert(pc.is_in(rest, value_set=cat)))
        self._arrow_ids = pa.concat_arrays([cat, rest])
        self.n_catalogue = len(cat)

    @property
    def ids(self) -> np.ndarray:
        """(I,) item ids as a numpy object array (a copy: for people and tests)."""
        return self._arrow_ids.to_numpy(zero_copy_only=False)

    def __len__(self) -> int:
        return len(self._arrow_ids)

    def rows(self, ids: IdsLike) -> np.ndarray:
        """(N,) int64 rows of ``ids``; -1 for an id not in the index."""
        return rows_in(self._arrow_ids, ids)


def _sorted_unique(ids: IdsLike) -> pa.Array:
    unique = pc.unique(id_array(ids))
    return unique.take(pc.sort_indices(unique))


@dataclass(frozen=True)
class Holdout:
    """The evaluated users of a date with their truth, seen items and slices.

    Attributes:
        user_ids: (U,) sorted user ids.
        items: the item index of every matrix below.
        truth: binary CSR (U, I) of relevant holdout items.
        seen: binary CSR (U, I) of training items (excluded from model lists).
        train_items: (U,) number of distinct training items per user.
        cold_users: (U,) bool, no training row.
        heavy_users: (U,) bool, ``train_items`` at or above the heavy threshold.
        cold_items: (I,) bool, the item has no training row.
        item_users: (I,) int64 distinct training users per item.
        heavy_threshold: the training-items threshold of ``heavy_users``.
        rejected: binary CSR (U, I) of the items a user said no to during the holdout
            (``hide``, ``not_interested``, ``dislike``): recommending one counts against a
            list (the ``said_no`` metric).
    """

    user_ids: np.ndarray
    items: ItemIndex
    truth: sp.csr_matrix
    seen: sp.csr_matrix
    train_items: np.ndarray
    cold_users: np.ndarray
    heavy_users: np.ndarray
    cold_items: np.ndarray
    item_users: np.ndarray
    heavy_threshold: float
    rejected: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def slice_truth(self) -> dict[str, tuple[sp.csr_matrix, np.ndarray]]:
        """slice name -> (truth (U, I), users (U,) bool) of each slice in :data:`SLICES`."""
        everyone = np.ones(self.n_users, dtype=bool)
        keep = sp.diags(self.cold_items.astype(np.float64))
        cold_truth = sp.csr_matrix(self.truth @ keep)
        cold_truth.eliminate_zeros()
        return {
            "all": (self.truth, everyone),
            "cold_users": (self.truth, self.cold_users),
            "heavy_users": (self.truth, self.heavy_users),
            "cold_items": (cold_truth, np.diff(cold_truth.indptr) > 0),
        }


def positive_events(events: pa.Table, cfg: OfflineEvalSettings) -> pa.Table:
    """The rows of ``events`` (``user_id, item_id, event_type, value``) that are positive.

    A row is positive when its type is in ``cfg.positive_event_types`` and, for ``rating``
    events, its value is at least ``cfg.min_rating``.
    """
    types = pa.array(cfg.positive_event_types, pa.string())
    is_type = pc.is_in(events["event_type"], value_set=types)
    is_rating = pc.equal(events["event_type"], "rating")
    rating_ok = pc.fill_null(pc.greater_equal(events["value"], cfg.min_rating), False)
    keep = pc.and_(is_type, pc.or_(pc.invert(is_rating), rating_ok))
    return events.filter(keep)


def sample_users(users: Sequence[str] | pa.Array | pa.ChunkedArray, max_users: int,
                 seed: int) -> list[str]:
    """The distinct ``users`` sorted, or a sorted sample of ``max_users`` of them drawn
    with ``seed``. Sorting and sampling run in Arrow: only the kept ids become Python."""
    ids = users if isinstance(users, (pa.Array, pa.ChunkedArray)) else pa.array(users, pa.string())
    ids = pc.unique(ids.cast(pa.string()))
    ids = ids.take(pc.sort_indices(ids))
    if max_users and len(ids) > max_users:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(ids), size=max_users, replace=False)
        ids = ids.take(pa.array(np.sort(pick)))
    return ids.to_pylist()


def pair_matrix(user_pos: np.ndarray, item_rows: np.ndarray, shape: tuple[int, int]
                ) -> sp.csr_matrix:
    """Binary CSR ``shape`` with a 1 at each valid (user, item) pair (repeats count once)."""
    ok = (user_pos >= 0) & (item_rows >= 0)
    out = sp.csr_matrix((np.ones(int(ok.sum())), (user_pos[ok], item_rows[ok])), shape=shape)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def build_holdout(events: pa.Table, train: pa.Table, catalogue: IdsLike,
                  cfg: OfflineEvalSettings, seed: int) -> Holdout:
    """The holdout from its events and the model's training rows.

    Args:
        events: holdout ``silver/interactions`` rows (``user_id, item_id, event_type,
            value``).
        train: ``gold/training_matrix`` rows of the model (``user_id, item_id``).
        catalogue: every item id a stage may recommend (training items are added).
        cfg: positive events, heavy-user quantile, user sample size.
        seed: seed of the user sample.

    Returns:
        The :class:`Holdout`; it has no users when no holdout event is positive.
    """
    pos = positive_events(events, cfg)
    users = sample_users(pos["user_id"], cfg.max_users, seed)
    sampled = pa.array(users, pa.string())
    # the training matrix is read column-wise by Arrow: only distinct ids become Python
    train_users = train["user_id"].cast(pa.string())
    train_item_ids = train["item_id"].cast(pa.string())
    items = ItemIndex(pa.chunked_array([id_array(catalogue), id_array(train_item_ids)]),
                      pos["item_id"])
    shape = (len(users), len(items))

    def upos(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
        found = pc.index_in(ids.cast(pa.string()), value_set=sampled)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    truth = pair_matrix(upos(pos["user_id"]), items.rows(pos["item_id"]), shape)
    said_no = events.filter(pc.is_in(events["event_type"],
                                     value_set=pa.array(NEGATIVE_FEEDBACK, pa.string())))
    rejected = pair_matrix(upos(said_no["user_id"]), items.rows(said_no["item_id"]), shape)
    train_rows = items.rows(train_item_ids)
    seen = pair_matrix(upos(train_users), train_rows, shape)
    # per-user training counts over ALL training users (for the heavy quantile)
    inverse = pc.dictionary_encode(train_users.combine_chunks()
                                   if isinstance(train_users, pa.ChunkedArray)
                                   else train_users).indices.to_numpy(zero_copy_only=False)
    inverse = np.asarray(inverse, dtype=np.int64)
    all_pairs = sp.csr_matrix((np.ones(len(train_users)), (inverse, train_rows)),
                              shape=(int(inverse.max(initial=-1)) + 1, len(items)))
    all_pairs.sum_duplicates()
    all_pairs.data[:] = 1.0
    per_train_user = np.diff(all_pairs.indptr)
    threshold = float(np.quantile(per_train_user, cfg.heavy_user_quantile)) \
        if per_train_user.size else float("inf")
    train_items = np.diff(seen.indptr).astype(np.int64)
    item_users = np.diff(all_pairs.tocsc().indptr).astype(np.int64)
    return Holdout(
        user_ids=np.asarray(users, dtype=object), items=items, truth=truth, seen=seen,
        train_items=train_items, cold_users=train_items == 0,
        heavy_users=(train_items > 0) & (train_items >= threshold),
        cold_items=item_users == 0, item_users=item_users, heavy_threshold=threshold,
        rejected=rejected)


def padded_lists(user_pos: np.ndarray, item_rows: np.ndarray, order: np.ndarray,
                 n_users: int, width: int) -> np.ndarray:
    """Turn long rows (user, item, sort key) into padded lists, best (smallest key) first.

    Rows with a negative user or item are dropped; a repeated (user, item) keeps its best
    row; equal keys rank the lower item row first.

    Args:
        user_pos: (R,) user positions in ``[0, n_users)`` or -1.
        item_rows: (R,) item rows or -1.
        order: (R,) sort key, ascending (pass ``-score`` for scores, ``rank`` for ranks).
        n_users: U.
        width: K, the list length kept.

    Returns:
        int64 (U, K) item rows padded with -1.
    """
    out = np.full((n_users, width), PAD, dtype=np.int64)
    ok = (user_pos >= 0) & (item_rows >= 0)
    u, it, key = user_pos[ok], item_rows[ok], np.asarray(order, dtype=np.float64)[ok]
    first = np.lexsort((it, key, u))
    u, it, key = u[first], it[first], key[first]
    pair = u * (int(it.max(initial=0)) + 1) + it
    _, keep = np.unique(pair, return_index=True)
    keep.sort()
    u, it = u[keep], it[keep]
    starts = np.searchsorted(u, np.arange(n_users))
    pos = np.arange(len(u)) - starts[u]
    fits = pos < width
    out[u[fits], pos[fits]] = it[fits]
    return out
