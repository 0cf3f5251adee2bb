"""``fixed-split``: given train, valid and test files (``user item item ...`` per line).

Tuning fits on train and scores valid (ranking items not in train). The test figures come
from a refit on train + valid with the chosen settings, ranking every item not in train or
valid. recall@k = hits / |test items|.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from conf.errors import InputDataError
from conf.evaluation import QualityBenchSettings
from evaluation.protocols.runner import ProtocolData
from evaluation.protocols.splits import reindex, sample_users, to_csr
from jobs.datasets.fixed_split import read_fixed_split

logger = logging.getLogger(__name__)


def read_splits(
    train: Path, valid: Path, test: Path
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three files as ``(users, items)`` pairs, in train, valid, test order.

    Raises:
        FileNotFoundError: a file is missing (the message names it).
    """
    out = []
    for path in (train, valid, test):
        if not Path(path).is_file():
            raise InputDataError(f"split file not found: {path}")
        out.append(read_fixed_split(path))
    return out


def build(
    parts: list[tuple[np.ndarray, np.ndarray]],
    settings: QualityBenchSettings,
    quick: bool = False,
    seed: int = 0,
) -> ProtocolData:
    """The protocol's matrices from the (train, valid, test) interaction pairs.

    Users and items are re-indexed over the union of the three files, so an item seen
    only in valid or test is still ranked.

    Args:
        parts: ``[(users, items)] * 3`` int64 arrays, train, valid, test.
        settings: ``quick_users``.
        quick: keep ``settings.quick_users`` users (drawn with ``seed``).
        seed: seed of the quick user sample.
    """
    sizes = [p[0].shape[0] for p in parts]
    users = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    which = np.repeat(np.arange(3), sizes)
    if quick:
        keep = sample_users(users, settings.quick_users, seed)
        users, items, which = users[keep], items[keep], which[keep]
    if users.size == 0:
        raise InputDataError("the split files hold no interactions")
    users, items = reindex(users)[0], reindex(items)[0]
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    train, valid, test = (to_csr(users[which == j], items[which == j], shape) for j in range(3))
    seen = (train + valid).tocsr()
    seen.data[:] = 1.0
    overlap = int(test.multiply(seen).nnz)
    if overlap:
        logger.warning("%d test pairs also appear in train/valid; they cannot be hit", overlap)
    info = {
        "users": shape[0], "items": shape[1], "train": int(train.nnz),
        "valid": int(valid.nnz), "test": int(test.nnz), "test_pairs_in_train_or_valid": overlap,
        "final_fit": "train + valid; test ranks items not in train or valid",
    }
    logger.info("fixed-split: %s", info)
    return ProtocolData(
        protocol="fixed-split", tune_train=train, valid=valid, valid_exclude=train,
        final_train=seen, test=test, test_exclude=seen, info=info,
    )
