"""The hourly fold-in's pure parts: which users changed, their matrix rows and new vectors.

Shapes: B changed users, I items of the release, F factors.

An hourly run for ``(ds, hour)`` has a logical time ``cutoff = ds hour:00 UTC`` (Airflow's
``logical_date``). It builds on a nightly *base* release, which records the version of
``silver/interactions`` it was built from. The users to refresh are those with an event in
silver now, before ``cutoff``, that was not there at that version (late arrivals included);
each is refreshed from all their events of the look-back window before ``cutoff``. The
result depends only on ``(ds, hour)``, the base release and the events, not on which earlier
hours ran, so a rerun or a skipped hour changes nothing.

No Spark, no paths: :mod:`jobs.hourly` reads the tables and calls these functions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from conf.errors import FoldInError
from conf.pipeline import AlsSettings
from jobs.als_fit import fold_in_users

__all__ = [
    "FoldInError", "HourWindow", "backfill_lists", "changed_users", "fold_vectors",
    "foldin_matrix", "hour_window", "merge_user_items", "new_events", "recent_items",
    "release_id",
]




@dataclass(frozen=True)
class HourWindow:
    """The time bounds of one hourly run.

    Attributes:
        ds: the run's logical date ``YYYY-MM-DD``.
        hour: the run's logical hour (0-23, UTC).
        cutoff: the run's logical time; events at or after it wait for a later hour.
        first_date: first event date of the look-back window folded into user vectors.
    """

    ds: str
    hour: int
    cutoff: datetime
    first_date: str


def hour_window(ds: str, hour: int, lookback_days: int) -> HourWindow:
    """The window of the hourly run ``(ds, hour)``.

    Args:
        ds: logical date ``YYYY-MM-DD``.
        hour: logical hour, 0-23 (UTC).
        lookback_days: ``matrix.lookback_days``: event dates folded in end at ``ds`` and
            start this many days earlier (inclusive).

    Raises:
        ValueError: ``hour`` is outside 0-23, ``ds`` is malformed or ``lookback_days`` < 1.
    """
    if not isinstance(hour, int) or isinstance(hour, bool) or not 0 <= hour <= 23:
        raise ValueError(f"hour must be an integer 0-23, got {hour!r}")
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
    day = date.fromisoformat(ds)
    cutoff = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    first = (day - timedelta(days=lookback_days - 1)).isoformat()
    return HourWindow(ds=day.isoformat(), hour=hour, cutoff=cutoff, first_date=first)


def new_events(now: pa.Table, before_ids: pa.Array | pa.ChunkedArray | Sequence[str],
               cutoff: datetime) -> pa.Table:
    """Events of ``now`` before ``cutoff`` whose ``event_id`` is not in ``before_ids``.

    Args:
        now: current silver rows (``event_id``, ``ts`` UTC, ...) of the partitions that
            changed since the base release.
        before_ids: the event ids those partitions held when the base release was built.
        cutoff: the run's logical time (exclusive).
    """
    if isinstance(before_ids, pa.ChunkedArray):
        values = before_ids.combine_chunks()
    elif isinstance(before_ids, pa.Array):
        values = before_ids
    else:
        values = pa.array(list(before_ids), pa.string())
    ts = now.column("ts")
    seen = pc.is_in(now.column("event_id"), value_set=values.cast(pa.string()))
    return now.filter(pc.and_(pc.less(ts, pa.scalar(cutoff, ts.type)), pc.invert(seen)))


def changed_users(new: pa.Table) -> list[str]:
    """Sorted distinct ``user_id`` of the new events: the users the run refreshes."""
    return sorted(set(new.column("user_id").to_pylist()))


def recent_items(new: pa.Table) -> pa.Table:
    """``user_id, recent``: per user, the distinct items of their new events (any type),
    most recent first. These never come back in the user's refreshed lists."""
    rows = sorted(zip(new.column("user_id").to_pylist(), new.column("ts").to_pylist(),
                      new.column("item_id").to_pylist(), strict=True),
                  key=lambda r: (r[0], -r[1].timestamp(), r[2]))
    out: dict[str, list[str]] = {}
    for user, _, item in rows:
        items = out.setdefault(user, [])
        if item not in items:
            items.append(item)
    return pa.table({"user_id": pa.array(list(out), pa.string()),
                     "recent": pa.array(list(out.values()), pa.list_(pa.string()))})


def foldin_matrix(matrix: pa.Table, user_ids: Sequence[str], item_row: Mapping[str, int],
                  n_items: int) -> sp.csr_matrix:
    """The (B, I) confidence rows of ``user_ids`` over the release's items.

    Args:
        matrix: training-matrix rows ``user_id, item_id, confidence`` (one per pair).
        user_ids: the B users, in the order of the output rows.
        item_row: item id -> row of the release's item vectors, for items that have one.
            Pairs of other items (new items, items without a CF vector) are left out: with
            the item vectors fixed they cannot move a user vector.
        n_items: I, the number of item-vector rows.

    Returns:
        float32 CSR (B, I); a user without a usable pair has an empty row.

    Raises:
        ValueError: a pair of ``(user, item)`` occurs twice or a confidence is negative.
    """
    user_row = {u: i for i, u in enumerate(user_ids)}
    rows, cols, vals = [], [], []
    for user, item, conf in zip(matrix.column("user_id").to_pylist(),
                                matrix.column("item_id").to_pylist(),
                                matrix.column("confidence").to_pylist(), strict=True):
        u, i = user_row.get(user), item_row.get(item)
        if u is None or i is None:
            continue
        if conf is None or not conf >= 0:
            raise ValueError(f"confidence of ({user}, {item}) must be >= 0, got {conf!r}")
        rows.append(u)
        cols.append(i)
        vals.append(conf)
    out = sp.csr_matrix((np.asarray(vals, np.float32), (np.asarray(rows, np.int64),
                                                         np.asarray(cols, np.int64))),
                        shape=(len(user_ids), n_items))
    if out.nnz != len(vals):
        raise ValueError(f"{len(vals) - out.nnz} duplicate (user, item) pair(s) in the matrix")
    return out


def fold_vectors(item_vecs: np.ndarray, user_items: sp.csr_matrix, als: AlsSettings
                 ) -> tuple[np.ndarray, np.ndarray]:
    """User vectors with the item vectors fixed (:func:`jobs.embeddings.fold_in_users`).

    Args:
        item_vecs: (I, F) item vectors of the base release.
        user_items: (B, I) confidences (:func:`foldin_matrix`).
        als: the ALS settings of the model that made ``item_vecs``.

    Returns:
        ``(vectors, has)``: float32 (B, F) and bool (B,); ``has`` is False for users without
        a usable pair (their vector is zero and must not replace a stored one).

    Raises:
        FoldInError: a solved vector is not finite.
    """
    vectors = fold_in_users(item_vecs, user_items, als)
    has = np.diff(user_items.indptr) > 0
    if not np.isfinite(vectors).all():
        raise FoldInError("fold-in produced NaN or infinite user vectors; refusing them")
    return vectors, has


def merge_user_items(previous: Mapping[str, Sequence[str]], new: pa.Table,
                    types: Collection[str] = ("purchase",)) -> dict[str, list[str]]:
    """Items per user: ``previous`` lists plus the items of ``new`` events of ``types``
    (purchases; or the negative feedback types for the block list).

    Args:
        previous: user -> items the base release records (as purchased, or blocked).
        new: events with ``user_id, item_id, event_type``.
        types: the event types that add an item.

    Returns:
        user -> distinct items (previous ones first, then new ones in event order), for every
        user of ``previous`` and every user with a new such event.
    """
    out = {user: list(dict.fromkeys(items)) for user, items in previous.items()}
    for user, item, etype in zip(new.column("user_id").to_pylist(),
                                 new.column("item_id").to_pylist(),
                                 new.column("event_type").to_pylist(), strict=True):
        if etype in types:
            items = out.setdefault(user, [])
            if item not in items:
                items.append(item)
    return out


def backfill_lists(lists: pa.Table, users: Sequence[str],
                   previous: Mapping[str, Sequence[tuple[str, float, Sequence[str]]]],
                   blocked: Mapping[str, Collection[str]]) -> pa.Table:
    """One surface's refreshed lists, with a list for every refreshed user.

    An incremental release keeps the parent's list of a user without rows, so a refreshed
    user whose new list came out empty (e.g. a tiny catalogue) gets the parent's list with
    the ``blocked`` items (the ones they just interacted with, or may not see) removed.

    Args:
        lists: ``user_id, item_id, score, rank, sources`` rows of the refreshed users.
        users: every refreshed user.
        previous: user -> the parent's list ``[(item, score, sources)]`` best first.
        blocked: user -> items that must not appear.

    Returns:
        ``lists`` plus the backfilled rows (same columns).
    """
    have = set(lists.column("user_id").to_pylist())
    rows: dict[str, list] = {name: [] for name in lists.column_names}
    for user in users:
        if user in have:
            continue
        kept = [r for r in previous.get(user, []) if r[0] not in blocked.get(user, ())]
        for rank, (item, score, sources) in enumerate(kept, 1):
            for name, value in (("user_id", user), ("item_id", item), ("score", score),
                                ("rank", rank), ("sources", list(sources))):
                if name in rows:
                    rows[name].append(value)
    if not rows["user_id"]:
        return lists
    extra = pa.table({name: pa.array(values, lists.schema.field(name).type)
                      for name, values in rows.items()})
    return pa.concat_tables([lists, extra.select(lists.column_names)],
                            promote_options="permissive")


def release_id(window: HourWindow, base_id: str, event_ids: Iterable[str],
               settings_key: Mapping[str, object]) -> str:
    """``<ds>T<HH>-<hash8>``: the same base, hour, events and settings give the same id.

    Args:
        window: the run's window.
        base_id: the nightly release the run builds on.
        event_ids: ids of every event the run read (order does not matter).
        settings_key: the settings that shape the result (JSON-serialisable).
    """
    digest = hashlib.sha256(json.dumps(
        {"base": base_id, "cutoff": window.cutoff.isoformat(), "settings": settings_key},
        sort_keys=True, default=str).encode())
    for event_id in sorted(event_ids):
        digest.update(event_id.encode() + b"\n")
    return f"{window.ds}T{window.hour:02d}-{digest.hexdigest()[:8]}"
