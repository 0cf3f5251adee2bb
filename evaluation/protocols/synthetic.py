"""``synthetic``: a fixed split of generated data at the size of the common academic sets.

Gowalla, Yelp2018 and Amazon-book (LightGCN's tables) are about 30,000-50,000 users x
40,000-90,000 items x 1-3 million interactions. This protocol generates data of a chosen
shape with the features that make those sets hard: power-law item popularity, skewed user
activity and taste clusters (low-rank preferences). It is a cost test of ``recpipe bench
quality`` (time, memory) with a learnable signal, not a quality benchmark: its figures are
never compared with published ones.

Generation (seeded): item popularity ``p_i ~ (i + 1)^-popularity_exponent``, user and item
factors ``N(0, 1/F)``, and each user's ``n_u`` (log-normal, mean N/U) distinct items drawn
without replacement with probability proportional to ``p_i exp(taste * u . v_i)`` (Gumbel
top-n over blocks of users). Each user's items are then split like the LightGCN data: a
random ``test_share`` to test, and from the rest a random ``valid_share`` to validation;
the shares go through :func:`evaluation.protocols.fixed_split.build`, so the protocol runs
exactly as ``fixed-split`` does on files.
"""

from __future__ import annotations

import logging

import numpy as np

from conf.evaluation import QualityBenchSettings
from evaluation.protocols import fixed_split
from evaluation.protocols.runner import ProtocolData
from evaluation.protocols.splits import ratio_split

logger = logging.getLogger(__name__)

FACTORS = 16
"""Latent dimensions of the generated tastes."""
BLOCK_USERS = 512
"""Users generated at once (memory: block x items float32)."""


def generate(
    n_users: int,
    n_items: int,
    n_interactions: int,
    seed: int,
    only_users: int = 0,
    popularity_exponent: float = 0.8,
    taste: float = 8.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(users, items)`` int64 pairs, about ``n_interactions`` of them.

    Users are drawn independently given the items, so ``only_users`` > 0 generates just
    that many users (drawn with the seed) of the full-size data set: the same distribution
    as generating everything and sampling users, at a fraction of the cost.

    Raises:
        ValueError: a size below 1, or more interactions than users x items / 2.
    """
    if min(n_users, n_items, n_interactions) < 1:
        raise ValueError(f"users, items and interactions must be >= 1, got {n_users}, "
                         f"{n_items}, {n_interactions}")
    if n_interactions > n_users * n_items // 2:
        raise ValueError(f"{n_interactions} interactions do not fit {n_users} x {n_items} at "
                         "density <= 0.5")
    rng = np.random.default_rng(seed)
    log_pop = -popularity_exponent * np.log1p(rng.permutation(n_items)).astype(np.float32)
    item_f = rng.normal(0, FACTORS ** -0.5, (n_items, FACTORS)).astype(np.float32)
    user_f = rng.normal(0, FACTORS ** -0.5, (n_users, FACTORS)).astype(np.float32)
    activity = rng.lognormal(0.0, 0.8, n_users)
    counts = np.maximum(1, np.round(activity / activity.sum() * n_interactions)).astype(int)
    counts = np.minimum(counts, n_items // 2)
    chosen = np.arange(n_users)
    if 0 < only_users < n_users:
        chosen = np.sort(rng.choice(n_users, size=only_users, replace=False))
    users, items = [], []
    for start in range(0, chosen.size, BLOCK_USERS):
        block = chosen[start:start + BLOCK_USERS]
        logits = taste * (user_f[block] @ item_f.T) + log_pop
        uniform = rng.random(logits.shape, dtype=np.float32)
        logits -= np.log(-np.log(np.maximum(uniform, np.float32(1e-30))))  # + Gumbel noise
        n = counts[block]
        top = np.argpartition(-logits, n.max() - 1, axis=1)[:, : n.max()]
        order = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1)
        ranked = np.take_along_axis(top, order, axis=1)
        keep = np.arange(n.max())[None, :] < n[:, None]
        users.append(np.broadcast_to(block[:, None], keep.shape)[keep])
        items.append(ranked[keep])
    return np.concatenate(users).astype(np.int64), np.concatenate(items).astype(np.int64)


def build(
    n_users: int,
    n_items: int,
    n_interactions: int,
    settings: QualityBenchSettings,
    quick: bool = False,
    seed: int = 0,
    test_share: float = 0.2,
    valid_share: float = 0.1,
) -> ProtocolData:
    """Generate, split per user (train, valid, test) and build the fixed-split matrices.

    Args:
        n_users, n_items, n_interactions: the generated shape.
        settings: as for :func:`evaluation.protocols.fixed_split.build`.
        quick: generate only ``settings.quick_users`` users of the full-size data set.
        seed: seed of the data, the split and the quick sample.
        test_share: share of each user's items in test.
        valid_share: share of each user's remaining items in validation.
    """
    users, items = generate(n_users, n_items, n_interactions, seed,
                            only_users=settings.quick_users if quick else 0)
    shares = [(1 - test_share) * (1 - valid_share), (1 - test_share) * valid_share, test_share]
    part = ratio_split(users, shares, seed)
    parts = [(users[part == j], items[part == j]) for j in range(3)]
    data = fixed_split.build(parts, settings, quick, seed)
    data.protocol = "synthetic"
    data.info.update({"generated": {"users": n_users, "items": n_items,
                                    "interactions": n_interactions, "seed": seed,
                                    "pairs_drawn": int(users.size)}})
    logger.info("synthetic: %s", data.info)
    return data
