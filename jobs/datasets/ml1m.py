"""The shared MovieLens 1M (binarized) as a nightly landing folder.

``../shared/data/ml-1m/{train,valid,test}.txt`` hold MovieLens 1M ratings >= 3 as
``user item item ...`` lines (ids re-indexed from 0): no ratings, no timestamps, no titles,
genres or demographics. :func:`convert_ml1m` writes the three files the nightly reads:

- ``events.parquet``: one ``click`` event per interaction (``value`` null). The timestamps
  are SYNTHETIC (:func:`synthetic_epochs`): each user's interactions, in file order (train,
  then valid, then test), are spread evenly over ``days`` days ending at ``end_date``; a
  user's interactions that fall on the same day are a minute apart, so they form one session.
  They carry no information about when anything happened: time-based results (the temporal
  holdout, recency decay, co-visitation sessions) reflect this layout, not user behaviour.
- ``items.parquet``: item ids only; ``available`` true and ``boost`` 1.0 (the catalogue
  defaults); title, categories, attributes and ``created_at`` null.
- ``users.parquet``: user ids only; attributes and ``created_at`` null.

The published counts (836,478 interactions, 6,039 users, 3,628 items) are checked.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from conf.errors import DatasetError, InputDataError, UsageError
from jobs.datasets.fixed_split import fixed_split_to_events, read_fixed_split
from jobs.datasets.formats import (
    ITEMS_SCHEMA,
    RAW_EVENTS_SCHEMA,
    USERS_SCHEMA,
    write_parquet,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
"""The files, ``<split>.txt``, in the order each user's interactions are laid out in time."""
EXPECTED_COUNTS = {"interactions": 836_478, "users": 6_039, "items": 3_628}
"""Published size of the shared files (``../shared/data/ml-1m/README.md``)."""
DEFAULT_END_DATE = date(2003, 2, 28)
"""Last synthetic day by default (the last day of the original MovieLens 1M ratings)."""
DEFAULT_DAYS = 180
"""Synthetic days by default: long enough that a first night 7 days before the end date
quarantines under 5% of the events as future-dated (``ingest.max_quarantine_share``)."""
DAY_START_S = 8 * 3600
"""A user's first interaction of a day is at 08:00 UTC plus ``user % 12`` hours."""
SPACING_S = 60
"""Seconds between a user's consecutive interactions on one day (less if the day is full)."""


def read_ml1m_splits(src_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``train.txt``, ``valid.txt`` and ``test.txt`` of ``src_dir``, in that order.

    Returns:
        ``(users, items, split)``, each of shape (N,) in file order (train lines, then valid,
        then test): int64 ids and the split's index in :data:`SPLITS` (int8).

    Raises:
        DatasetError: the folder or one of the files is missing.
        ValueError: a line is malformed (file, line and token named).
    """
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise DatasetError(f"ML-1M folder not found: {src_dir} (expected "
                           f"{', '.join(f'{s}.txt' for s in SPLITS)})")
    missing = [f"{s}.txt" for s in SPLITS if not (src_dir / f"{s}.txt").is_file()]
    if missing:
        raise DatasetError(f"ML-1M folder {src_dir} lacks {', '.join(missing)}")
    parts = [read_fixed_split(src_dir / f"{s}.txt") for s in SPLITS]
    users = np.concatenate([u for u, _ in parts])
    items = np.concatenate([i for _, i in parts])
    split = np.concatenate([np.full(u.shape[0], j, dtype=np.int8)
                            for j, (u, _) in enumerate(parts)])
    return users, items, split


def _rank_within(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For keys grouped in a stable order: each element's 0-based rank within its key and the
    key's size, both of shape (N,), in the input order."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, sorted_keys.shape[0]])
    rank_sorted = np.arange(sorted_keys.shape[0]) - np.repeat(starts, sizes)
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    size = np.empty_like(rank_sorted)
    size[order] = np.repeat(sizes, sizes)
    return rank, size


def synthetic_epochs(users: np.ndarray, end_date: date, days: int) -> np.ndarray:
    """SYNTHETIC event times that keep each user's order and span ``days`` days.

    A user's k-th of n interactions (in array order) falls on day
    ``floor((2k + 1) * days / (2n))`` of the window (the midpoint of its share, so every user
    spans the window and a user's last ``h / days`` share of interactions falls in the last
    ``h`` days). On each day, the user's interactions start at ``DAY_START_S + (user % 12)``
    hours and are ``SPACING_S`` seconds apart (fewer when more would not fit in the day).
    Deterministic: no randomness.

    Args:
        users: int64 user ids, shape (N,), each user's interactions in their order.
        end_date: the window's last day (UTC).
        days: the window's length in days.

    Returns:
        int64 epoch seconds, shape (N,), within ``[end_date - days + 1, end_date]``, strictly
        increasing along each user's interactions.

    Raises:
        ValueError: ``days`` < 1, or a user has more interactions on one day than seconds left
            in it (the message names the user; use more days).
    """
    if days < 1:
        raise UsageError(f"days must be >= 1, got {days}")
    users = np.asarray(users, dtype=np.int64)
    rank, size = _rank_within(users)
    day = (2 * rank + 1) * days // (2 * size)
    # rank within (user, day): the users' interactions of one day are contiguous in rank
    key = users * days + day
    slot, per_day = _rank_within(key)
    start = DAY_START_S + (users % 12) * 3600
    spacing = np.minimum(SPACING_S, (86_400 - start) // np.maximum(per_day, 1))
    if users.shape[0] and spacing.min() < 1:
        bad = int(users[np.argmin(spacing)])
        raise InputDataError(f"user {bad} has {int(per_day.max())} interactions on one synthetic "
                         f"day, more than the day's seconds; use more days (got {days})")
    first = datetime.combine(end_date - timedelta(days=days - 1), datetime.min.time(), UTC)
    return int(first.timestamp()) + day * 86_400 + start + slot * spacing


def _ids_table(ids: np.ndarray, schema: pa.Schema) -> pa.Table:
    """A catalogue of ids only: the id column (the schema's first), the defaults ``available``
    true and ``boost`` 1.0 where the schema has them, every other column null."""
    n = ids.shape[0]
    arrays = []
    for field in schema:
        if field.name == schema.names[0]:
            arrays.append(pa.array(ids.astype(str), pa.string()))
        elif field.name == "available":
            arrays.append(pa.array(np.ones(n, dtype=bool)))
        elif field.name == "boost":
            arrays.append(pa.array(np.ones(n, dtype=np.float64)))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def check_counts(counts: dict[str, int], expected: dict[str, int]) -> None:
    """Raise unless the interaction, user and item counts are the expected ones.

    Raises:
        DatasetError: naming each count that differs and both numbers.
    """
    wrong = [f"{k} {counts[k]:,} (expected {v:,})" for k, v in expected.items()
             if counts.get(k) != v]
    if wrong:
        raise DatasetError("ML-1M counts differ from the published ones: " + "; ".join(wrong))


def convert_ml1m(
    src_dir: Path,
    out_dir: Path,
    end_date: date = DEFAULT_END_DATE,
    days: int = DEFAULT_DAYS,
    expected: dict[str, int] | None = EXPECTED_COUNTS,
) -> dict[str, int]:
    """Write ``events``, ``items`` and ``users`` Parquet for the nightly from the ML-1M files.

    Args:
        src_dir: folder with ``train.txt``, ``valid.txt``, ``test.txt``.
        out_dir: the landing folder (created).
        end_date: last day of the synthetic timestamps.
        days: number of synthetic days.
        expected: counts to check before writing (``interactions``, ``users``, ``items``);
            None skips the check.

    Returns:
        Row counts ``{"events": ..., "items": ..., "users": ...}``.

    Raises:
        DatasetError: a file is missing or the counts differ (nothing is written).
        ValueError: a line is malformed, or ``days`` is too small (see
            :func:`synthetic_epochs`).
    """
    users, items, split = read_ml1m_splits(src_dir)
    user_ids, item_ids = np.unique(users), np.unique(items)
    if expected is not None:
        check_counts({"interactions": int(users.shape[0]), "users": int(user_ids.shape[0]),
                      "items": int(item_ids.shape[0])}, expected)
    epochs = synthetic_epochs(users, end_date, days)
    events = pa.concat_tables([
        fixed_split_to_events(users[split == j], items[split == j], prefix=f"ml1m-{name}",
                              epoch_s=epochs[split == j])
        for j, name in enumerate(SPLITS)
    ])
    out_dir = Path(out_dir)
    write_parquet(events, out_dir / "events.parquet", RAW_EVENTS_SCHEMA)
    write_parquet(_ids_table(item_ids, ITEMS_SCHEMA), out_dir / "items.parquet", ITEMS_SCHEMA)
    write_parquet(_ids_table(user_ids, USERS_SCHEMA), out_dir / "users.parquet", USERS_SCHEMA)
    logger.info("ML-1M landing in %s: %d events over %d synthetic days ending %s",
                out_dir, events.num_rows, days, end_date)
    return {"events": events.num_rows, "items": int(item_ids.shape[0]),
            "users": int(user_ids.shape[0])}

