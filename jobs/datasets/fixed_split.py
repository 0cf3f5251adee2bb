"""Fixed-split interaction files: one line per user, ``user item item ...``.

This is the format of ``../shared/data/ml-1m/{train,valid,test}.txt`` (MovieLens 1M, ratings
>= 3 kept, ids re-indexed from 0, no timestamps). :func:`read_fixed_split` gives the
interactions as two aligned int64 arrays; :func:`fixed_split_to_events` turns them into the
raw events format with a *synthetic* timestamp (the source has none).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from conf.errors import InputDataError, UsageError
from jobs.datasets.formats import events_table

logger = logging.getLogger(__name__)

SYNTHETIC_BASE_TS = datetime(2000, 1, 1, tzinfo=UTC)
"""Base of the synthetic timestamps: interaction number ``k`` of a file gets this + ``k`` s."""


def read_fixed_split(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read a fixed-split file into aligned user and item arrays.

    Each line is ``user item item ...`` (whitespace separated, non-negative integers). A line
    with only a user holds no interaction; blank lines are skipped.

    Args:
        path: the text file.

    Returns:
        ``(users, items)``, both int64 of shape (N,), N the number of interactions, in file
        order: ``users[k]`` interacted with ``items[k]``.

    Raises:
        ValueError: a line holds a token that is not a non-negative integer (the message names
            the file, the line number and the token), or a user appears on two lines.
    """
    path = Path(path)
    user_chunks: list[np.ndarray] = []
    item_chunks: list[np.ndarray] = []
    seen: dict[int, int] = {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            tokens = line.split()
            if not tokens:
                continue
            for token in tokens:
                if not token.isdigit():
                    raise InputDataError(
                        f"{path}:{lineno}: expected non-negative integer ids, got {token!r}"
                    )
            user = int(tokens[0])
            if user in seen:
                raise InputDataError(
                    f"{path}:{lineno}: user {user} already listed on line {seen[user]}"
                )
            seen[user] = lineno
            items = np.array(tokens[1:], dtype=np.int64)
            item_chunks.append(items)
            user_chunks.append(np.full(items.shape[0], user, dtype=np.int64))
    if not item_chunks:
        logger.warning("%s holds no interactions", path)
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    users, items = np.concatenate(user_chunks), np.concatenate(item_chunks)
    logger.info("read %d interactions of %d users from %s", items.shape[0], len(seen), path)
    return users, items


def fixed_split_to_events(
    users: np.ndarray,
    items: np.ndarray,
    prefix: str = "fixed",
    base_ts: datetime = SYNTHETIC_BASE_TS,
    epoch_s: np.ndarray | None = None,
) -> pa.Table:
    """Turn fixed-split interactions into raw events (``event_type`` ``click``).

    The timestamps are SYNTHETIC: interaction number ``k`` (0-based, file order) gets
    ``base_ts + k`` seconds. They keep each user's file order and make ``event_id`` unique,
    and carry no information about when anything happened.

    Args:
        users: int64 user ids, shape (N,).
        items: int64 item ids, shape (N,), aligned with ``users``.
        prefix: start of every ``event_id`` (``<prefix>-<user>-<item>-<k>``); use a different
            prefix per file (e.g. ``ml1m-train``) so ids stay unique across files.
        base_ts: timezone-aware base of the synthetic timestamps.
        epoch_s: int64 synthetic times in epoch seconds, shape (N,), used instead of
            ``base_ts + k`` (e.g. :func:`jobs.datasets.ml1m.synthetic_epochs`).

    Returns:
        A table with :data:`~jobs.datasets.formats.RAW_EVENTS_SCHEMA`, N rows; ``value`` and
        ``surface`` are null.

    Raises:
        ValueError: the arrays differ in shape, ``base_ts`` is naive or ``epoch_s`` is not
            aligned with them.
    """
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise UsageError(f"users and items must be aligned 1-D arrays, got shapes "
                         f"{users.shape} and {items.shape}")
    if base_ts.tzinfo is None:
        raise UsageError(f"base_ts must be timezone-aware, got {base_ts!r}")
    n = users.shape[0]
    position = np.arange(n, dtype=np.int64)
    if epoch_s is None:
        epoch = int(base_ts.timestamp()) + position
    else:
        epoch = np.asarray(epoch_s, dtype=np.int64)
        if epoch.shape != users.shape:
            raise UsageError(f"epoch_s must have the shape of users {users.shape}, "
                             f"got {epoch.shape}")
    return events_table(
        event_id=[f"{prefix}-{u}-{i}-{k}" for u, i, k in zip(users, items, position, strict=True)],
        user_id=users.astype(str),
        item_id=items.astype(str),
        event_type="click",
        epoch_s=epoch,
    )
