"""``recbole-ml1m``: RecBole's ML-1M general benchmark on the binarized shared files.

Protocol (``../shared/data/ml-1m/README.md``): merge train/valid/test, keep each (user, item)
once, 10-core filter (users and items, repeated until stable), random 80/10/10 split per
user with a fixed seed, tune on valid, report test; full ranking. As in RecBole, the final
model is the one fitted on train (no refit on train + valid), and the test ranking leaves
out the user's train and valid items (RecBole's test-phase history).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from conf.errors import InputDataError
from conf.evaluation import QualityBenchSettings
from evaluation.protocols.published import RECBOLE_ML1M
from evaluation.protocols.runner import ProtocolData
from evaluation.protocols.splits import dedupe, k_core, ratio_split, reindex, sample_users, to_csr
from jobs.datasets.fixed_split import read_fixed_split

logger = logging.getLogger(__name__)

FILES = ("train.txt", "valid.txt", "test.txt")


def read_ml1m(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """All interactions of the three shared ML-1M files: ``(users, items)`` int64 (N,).

    Raises:
        FileNotFoundError: a file is missing (the message names it).
    """
    parts = []
    for name in FILES:
        path = Path(folder) / name
        if not path.is_file():
            raise InputDataError(f"ML-1M file not found: {path}")
        parts.append(read_fixed_split(path))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build(
    users: np.ndarray,
    items: np.ndarray,
    settings: QualityBenchSettings,
    quick: bool = False,
    seed: int = 0,
) -> ProtocolData:
    """The protocol's matrices from merged interactions.

    Args:
        users, items: int64 (N,) merged interactions.
        settings: split ratios, k-core threshold, split seed, ``quick_users``.
        quick: keep ``settings.quick_users`` users (drawn with ``seed``) before filtering.
        seed: seed of the quick user sample.
    """
    n_raw = int(users.shape[0])
    keep = dedupe(users, items)
    if quick:
        keep &= sample_users(users, settings.quick_users, seed)
    users, items = users[keep], items[keep]
    core = k_core(users, items, settings.recbole_min_count)
    users, items = reindex(users[core])[0], reindex(items[core])[0]
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    part = ratio_split(users, settings.recbole_ratios, settings.recbole_seed)
    train, valid, test = (to_csr(users[part == j], items[part == j], shape) for j in range(3))
    seen = (train + valid).tocsr()
    info = {
        "source": "../shared/data/ml-1m (train+valid+test merged)",
        "interactions_raw": n_raw, "interactions_kcore": int(users.shape[0]),
        "users": shape[0], "items": shape[1],
        "train": int(train.nnz), "valid": int(valid.nnz), "test": int(test.nnz),
        "split": f"random {settings.recbole_ratios} per user, seed {settings.recbole_seed}",
        "final_fit": "train only (as RecBole); test ranks items not in train or valid",
    }
    logger.info("recbole-ml1m: %s", info)
    return ProtocolData(
        protocol="recbole-ml1m", tune_train=train, valid=valid, valid_exclude=train,
        final_train=train, test=test, test_exclude=seen, info=info, published=RECBOLE_ML1M,
    )
