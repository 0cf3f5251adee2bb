"""``msr-ml100k``: Microsoft Recommenders' MovieLens 100K protocol.

Protocol (``../shared/data/ml-1m/README.md``, bottom): random 75/25 split stratified per
user with seed 42 (``python_stratified_split``, reproduced on the rows in source-file order);
top-10 over items the user has not rated in train; every test rating is relevant; binary
NDCG. The protocol has no validation set, so tuning carves one out of TRAIN (the same
stratified split of each user's train ratings, with the run's seed); the final models are
refitted on the whole train set.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from conf.evaluation import QualityBenchSettings
from evaluation.protocols.published import MSR_ML100K
from evaluation.protocols.runner import ProtocolData
from evaluation.protocols.splits import reindex, sample_users, stratified_split, to_csr

logger = logging.getLogger(__name__)


def read_ml100k(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """MovieLens 100K ratings as ``(users, items)`` int64 (N,), in source-file order.

    Reads ``<data_dir>/movielens-100k/events.parquet`` (``recpipe data fetch
    movielens-100k``), fetching and converting it first when absent.
    """
    from jobs.datasets.movielens import convert_movielens_100k, fetch_movielens_100k

    events = Path(data_dir) / "movielens-100k" / "events.parquet"
    if not events.is_file():
        logger.info("%s missing: fetching MovieLens 100K", events)
        src = fetch_movielens_100k(Path(data_dir) / "cache")
        convert_movielens_100k(src, events.parent)
    table = pq.read_table(events, columns=["user_id", "item_id"])
    users = table.column("user_id").to_numpy(zero_copy_only=False).astype(np.int64)
    items = table.column("item_id").to_numpy(zero_copy_only=False).astype(np.int64)
    return users, items


def build(
    users: np.ndarray,
    items: np.ndarray,
    settings: QualityBenchSettings,
    quick: bool = False,
    seed: int = 0,
) -> ProtocolData:
    """The protocol's matrices from the ratings in source order.

    Args:
        users, items: int64 (N,) ratings in ``u.data`` order (the split depends on it).
        settings: ``msr_train_ratio``, ``msr_seed``, ``msr_valid_ratio``, ``quick_users``.
        quick: keep ``settings.quick_users`` users (drawn with ``seed``).
        seed: seed of the validation carve-out and of the quick user sample.
    """
    if quick:
        keep = sample_users(users, settings.quick_users, seed)
        users, items = users[keep], items[keep]
    users, items = reindex(users)[0], reindex(items)[0]
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    in_train = stratified_split(users, settings.msr_train_ratio, settings.msr_seed)
    tr_users, tr_items = users[in_train], items[in_train]
    fit = stratified_split(tr_users, settings.msr_valid_ratio, seed)
    tune_train = to_csr(tr_users[fit], tr_items[fit], shape)
    train = to_csr(tr_users, tr_items, shape)
    info = {
        "source": "MovieLens 100K (recbole==1.2.1 wheel, ml-100k.inter order)",
        "users": shape[0], "items": shape[1], "ratings": int(users.shape[0]),
        "train": int(train.nnz), "test": int((~in_train).sum()),
        "tune_train": int(tune_train.nnz), "valid": int((~fit).sum()),
        "split": f"stratified {settings.msr_train_ratio} per user, seed {settings.msr_seed}",
        "tuning": f"valid carved from train ({1 - settings.msr_valid_ratio:.2f}, seed {seed})",
    }
    logger.info("msr-ml100k: %s", info)
    return ProtocolData(
        protocol="msr-ml100k",
        tune_train=tune_train,
        valid=to_csr(tr_users[~fit], tr_items[~fit], shape),
        valid_exclude=tune_train,
        final_train=train,
        test=to_csr(users[~in_train], items[~in_train], shape),
        test_exclude=train,
        info=info,
        published=MSR_ML100K,
    )
