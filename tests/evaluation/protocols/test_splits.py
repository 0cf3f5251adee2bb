"""Splits and filters against hand-made cases and the reference pandas algorithm."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.protocols.splits import (
    dedupe,
    k_core,
    ratio_split,
    reindex,
    sample_users,
    stratified_split,
    to_csr,
)


def _msr_reference(users: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Microsoft Recommenders' python_stratified_split, written with pandas as they do."""
    np.random.seed(seed)
    data = pd.DataFrame({"user": users})
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values(["user", "random"])
    groups = data.groupby("user")
    data["count"] = groups["user"].transform("count")
    data["rank"] = (groups.cumcount() + 1) / data["count"]
    return data.sort_index()["rank"].to_numpy() <= ratio


def test_stratified_split_reproduces_the_pandas_algorithm():
    rng = np.random.default_rng(5)
    users = rng.integers(0, 30, size=600)
    got = stratified_split(users, 0.75, 42)
    np.testing.assert_array_equal(got, _msr_reference(users, 0.75, 42))


def test_stratified_split_keeps_three_quarters_per_user():
    users = np.repeat([0, 1], [8, 4])
    train = stratified_split(users, 0.75, 1)
    assert train[:8].sum() == 6 and train[8:].sum() == 3


def test_ratio_split_counts_follow_recbole_rounding():
    # n=10 -> 8/1/1; n=15 -> 13/1/1; n=3 -> 1/1/1 (tiny parts raised); n=2 -> 1/0/1
    sizes = [10, 15, 3, 2]
    users = np.repeat(np.arange(4), sizes)
    part = ratio_split(users, [0.8, 0.1, 0.1], seed=3)
    counts = [np.bincount(part[users == u], minlength=3).tolist() for u in range(4)]
    assert counts == [[8, 1, 1], [13, 1, 1], [1, 1, 1], [1, 0, 1]]


def test_ratio_split_depends_on_the_seed_only():
    users = np.repeat(np.arange(5), 20)
    a, b = ratio_split(users, [0.8, 0.1, 0.1], 1), ratio_split(users, [0.8, 0.1, 0.1], 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ratio_split(users, [0.8, 0.1, 0.1], 2))


def test_k_core_repeats_until_stable():
    # min 2: only item 3 (one user) goes. min 3: items 0, 2, 3 go, then user 2 (one item
    # left), then item 1 (two users left): nothing remains.
    users = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    items = np.array([0, 1, 0, 1, 1, 2, 2, 3])
    keep = k_core(users, items, 2)
    np.testing.assert_array_equal(keep, [1, 1, 1, 1, 1, 1, 1, 0])
    keep3 = k_core(users, items, 3)
    assert not keep3.any()


def test_dedupe_reindex_to_csr_and_sample():
    users, items = np.array([5, 5, 9, 5]), np.array([7, 8, 7, 7])
    keep = dedupe(users, items)
    np.testing.assert_array_equal(keep, [1, 1, 1, 0])
    new_users, originals = reindex(users)
    np.testing.assert_array_equal(new_users, [0, 0, 1, 0])
    np.testing.assert_array_equal(originals, [5, 9])
    matrix = to_csr(new_users, reindex(items)[0], (2, 2))
    np.testing.assert_array_equal(matrix.toarray(), [[1, 1], [1, 0]])
    mask = sample_users(np.array([1, 1, 2, 3, 3]), 2, seed=0)
    assert len(set(np.array([1, 1, 2, 3, 3])[mask].tolist())) == 2


def _recbole_counts(total: int, ratios: list[float]) -> list[int]:
    """RecBole's Dataset._calcu_split_ids rounding, ported line by line (as counts)."""
    cnt = [int(ratios[i] * total) for i in range(len(ratios))]
    cnt[0] = total - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def test_ratio_split_counts_match_recbole_for_every_size():
    sizes = list(range(1, 60))
    users = np.repeat(np.arange(len(sizes)), sizes)
    part = ratio_split(users, [0.8, 0.1, 0.1], seed=0)
    for user, size in enumerate(sizes):
        got = np.bincount(part[users == user], minlength=3).tolist()
        assert got == _recbole_counts(size, [0.8, 0.1, 0.1]), size
