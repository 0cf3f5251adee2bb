"""RP3beta against a dense numpy formula and weights computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.cf.rp3beta import RP3beta
from tests.algorithms.cf.test_models import N, checkerboard

# user 0 holds item 2 only; item 0 is used by five users, item 1 by one
HAND = np.array([
    [0, 0, 1, 0],
    [1, 1, 1, 0],
    [1, 0, 0, 1],
    [1, 0, 0, 1],
    [1, 0, 1, 1],
    [1, 0, 0, 1.0],
])


def weighted_matrix(n_users: int, n_items: int, seed: int) -> np.ndarray:
    """Random interactions of distinct strengths (so no ties among the weights)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.3) * (0.5 + rng.random((n_users, n_items)))
    x[0] = 0.0  # a user without interactions
    x[:, 3] = 0.0  # an item without users
    return x


def dense_rp3beta(x: np.ndarray, alpha: float, beta: float, k: int, normalize: bool):
    """The formula on dense arrays, with the top-k of each row chosen by a full sort."""
    user_sums, item_sums = x.sum(axis=1, keepdims=True), x.T.sum(axis=1, keepdims=True)
    p_ui = np.divide(x, user_sums, out=np.zeros_like(x), where=user_sums > 0)
    p_iu = np.divide(x.T, item_sums, out=np.zeros_like(x.T), where=item_sums > 0)
    w = (p_iu ** alpha) @ (p_ui ** alpha)
    popularity = np.maximum((x > 0).sum(axis=0), 1)
    w = w / popularity[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    pruned = np.zeros_like(w)
    for i, row in enumerate(w):
        top = np.argsort(-row)[:k]
        pruned[i, top] = row[top]
    if normalize:
        sums = pruned.sum(axis=1, keepdims=True)
        pruned = np.divide(pruned, sums, out=np.zeros_like(pruned), where=sums > 0)
    return pruned


@pytest.mark.parametrize("normalize", [False, True])
def test_equals_the_dense_formula(normalize):
    x = weighted_matrix(40, 25, seed=0)
    model = RP3beta(alpha=0.8, beta=0.6, neighbors=5, normalize=normalize, block_items=7)
    model.fit(sp.csr_matrix(x))
    expected = dense_rp3beta(x, alpha=0.8, beta=0.6, k=5, normalize=normalize)
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.score(np.arange(40)), x @ expected, rtol=1e-5, atol=1e-6)


def test_weights_by_hand_and_beta_demotes_the_popular_item():
    # W[2] = (1/3) (P_ui[0] + P_ui[1] + P_ui[4]) = [2/9, 1/9, 5/9, 1/9], diagonal dropped
    plain = RP3beta(beta=0.0).fit(sp.csr_matrix(HAND))
    np.testing.assert_allclose(plain.score(np.array([0]))[0], [2 / 9, 1 / 9, 0, 1 / 9],
                               rtol=1e-6)
    # beta = 1 divides by the item popularities [5, 1, 3, 4]
    penalised = RP3beta(beta=1.0).fit(sp.csr_matrix(HAND))
    np.testing.assert_allclose(penalised.score(np.array([0]))[0],
                               [2 / 45, 1 / 9, 0, 1 / 36], rtol=1e-6)
    exclude = sp.csr_matrix(HAND[:1])
    assert plain.recommend(np.array([0]), 1, exclude_csr=exclude)[0][0, 0] == 0
    assert penalised.recommend(np.array([0]), 1, exclude_csr=exclude)[0][0, 0] == 1


def test_pruning_keeps_the_largest_neighbors_of_each_row():
    x = sp.csr_matrix(weighted_matrix(60, 30, seed=1))
    full = RP3beta(neighbors=30).fit(x).similarity.toarray()
    pruned = RP3beta(neighbors=4).fit(x).similarity.toarray()
    counts = (pruned > 0).sum(axis=1)
    assert counts.max() == 4
    for i in range(30):
        kept = pruned[i] > 0
        np.testing.assert_allclose(pruned[i, kept], full[i, kept])
        if kept.any():  # nothing dropped is larger than what was kept
            assert full[i, ~kept].max(initial=0.0) <= pruned[i, kept].min()


def test_item_blocks_do_not_change_the_weights():
    x = sp.csr_matrix(weighted_matrix(50, 23, seed=2))
    one_block = RP3beta(neighbors=6, block_items=1000).fit(x).similarity
    for block_items in (1, 5, 22):
        blocked = RP3beta(neighbors=6, block_items=block_items).fit(x).similarity
        np.testing.assert_allclose(blocked.toarray(), one_block.toarray(), rtol=1e-6)


def test_checkerboard_recovers_the_held_out_items():
    train, held = checkerboard()
    model = RP3beta(neighbors=N).fit(train)
    ids, _ = model.recommend(np.arange(N), 2, exclude_csr=train)
    for u in range(N):
        assert set(ids[u].tolist()) == held[u], u


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 0.0}, "alpha must be > 0, got 0.0"),
    ({"alpha": float("nan")}, "alpha must be > 0"),
    ({"beta": -0.1}, "beta must be >= 0, got -0.1"),
    ({"neighbors": 0}, "neighbors must be >= 1, got 0"),
    ({"block_items": 0}, "block_items must be >= 1, got 0"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RP3beta(**kwargs)
