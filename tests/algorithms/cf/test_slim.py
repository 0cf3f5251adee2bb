"""ADMM-SLIM against EASE's closed form, a lasso solved by hand and its constraints."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.cf.slim import AdmmSlim
from tests.algorithms.cf.test_models import N, checkerboard


def random_matrix(n_users: int, n_items: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n_users, n_items)) < 0.3).astype(np.float64)


def dense(weights: sp.csr_matrix | np.ndarray) -> np.ndarray:
    return weights.toarray() if sp.issparse(weights) else np.asarray(weights)


def test_without_l1_and_signs_it_converges_to_ease():
    x = random_matrix(40, 25, seed=0)
    l2 = 5.0
    p0 = np.linalg.inv(x.T @ x + l2 * np.eye(25))
    ease = np.eye(25) - p0 / np.diag(p0)
    exact = AdmmSlim(l1=0.0, l2=l2, rho=5.0, iterations=300, nonnegative=False,
                     eps_abs=0.0, eps_rel=0.0).fit(sp.csr_matrix(x))
    assert exact.iterations_run == 300
    np.testing.assert_allclose(dense(exact.weights), ease, atol=1e-5)
    np.testing.assert_allclose(exact.score(np.arange(40)), x @ ease, atol=1e-4)
    stopped = AdmmSlim(l1=0.0, l2=l2, rho=5.0, iterations=300, nonnegative=False,
                       eps_abs=1e-6, eps_rel=1e-6).fit(sp.csr_matrix(x))
    assert stopped.iterations_run < 100
    np.testing.assert_allclose(dense(stopped.weights), ease, atol=1e-5)


def test_popularity_scaled_l2_converges_to_ease_with_item_penalties():
    # penalty of item i: l2 * G_ii ** 0.5; the l1-free fixed point is EASE with that diagonal
    x = random_matrix(40, 25, seed=1)
    gram = x.T @ x
    p0 = np.linalg.inv(gram + np.diag(3.0 * np.diag(gram) ** 0.5))
    ease = np.eye(25) - p0 / np.diag(p0)
    model = AdmmSlim(l1=0.0, l2=3.0, l2_exponent=0.5, rho=5.0, iterations=300,
                     nonnegative=False, eps_abs=0.0, eps_rel=0.0).fit(sp.csr_matrix(x))
    np.testing.assert_allclose(dense(model.weights), ease, atol=1e-5)
    constant = np.linalg.inv(gram + 3.0 * np.eye(25))
    assert not np.allclose(ease, np.eye(25) - constant / np.diag(constant), atol=1e-3)


def test_two_items_solve_the_lasso_by_hand():
    # items 0 and 1: x0.x0 = 3, x0.x1 = 2; min 1/2 |x1 - b x0|^2 + l2/2 b^2 + l1 |b|
    # gives b = (2 - l1) / (3 + l2) when l1 < 2, else 0
    x = sp.csr_matrix(np.array([[1, 1], [1, 1], [1, 0], [0, 1.0]]))
    for l1, expected in ((0.0, 0.5), (1.0, 0.25), (2.5, 0.0)):
        model = AdmmSlim(l1=l1, l2=1.0, rho=2.0, iterations=500, eps_abs=0.0, eps_rel=0.0)
        weights = dense(model.fit(x).weights)
        np.testing.assert_allclose(weights, [[0, expected], [expected, 0]], atol=1e-6)


def test_zero_diagonal_and_signs():
    x = sp.csr_matrix(random_matrix(60, 30, seed=1))
    signed = dense(AdmmSlim(l1=0.5, l2=2.0, rho=10.0, nonnegative=False).fit(x).weights)
    assert signed.min() < 0  # the data do ask for negative weights
    nonnegative = dense(AdmmSlim(l1=0.5, l2=2.0, rho=10.0).fit(x).weights)
    for weights in (signed, nonnegative):
        np.testing.assert_array_equal(np.diag(weights), 0.0)
    assert nonnegative.min() >= 0
    assert nonnegative.max() > 0


def test_larger_l1_gives_sparser_weights_stored_as_csr():
    x = sp.csr_matrix(random_matrix(80, 40, seed=2))
    dense_fit = AdmmSlim(l1=0.0, l2=2.0, rho=10.0, nonnegative=False).fit(x)
    sparse_fit = AdmmSlim(l1=8.0, l2=2.0, rho=10.0).fit(x)
    assert isinstance(dense_fit.weights, np.ndarray)  # few zeros: kept dense
    assert sp.issparse(sparse_fit.weights)
    assert sparse_fit.weights.nnz < np.count_nonzero(dense_fit.weights) / 2
    counts = [np.count_nonzero(dense(AdmmSlim(l1=l1, l2=2.0, rho=10.0).fit(x).weights))
              for l1 in (0.5, 2.0, 8.0)]
    assert counts[0] > counts[1] > counts[2] > 0
    np.testing.assert_allclose(sparse_fit.score(np.arange(80)),
                               x.toarray() @ sparse_fit.weights.toarray(), rtol=1e-5)


def test_checkerboard_recovers_the_held_out_items():
    train, held = checkerboard()
    model = AdmmSlim(l1=0.1, l2=1.0, rho=10.0, iterations=200).fit(train)
    ids, _ = model.recommend(np.arange(N), 2, exclude_csr=train)
    for u in range(N):
        assert set(ids[u].tolist()) == held[u], u


def test_refuses_a_catalogue_over_max_items():
    x = sp.csr_matrix(random_matrix(10, 30, seed=3))
    with pytest.raises(ValueError, match="refuses 30 items, over max_items=29"):
        AdmmSlim(max_items=29).fit(x)
    assert AdmmSlim(max_items=30, iterations=1).fit(x).iterations_run == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"l1": -1.0}, "l1 must be >= 0, got -1.0"),
    ({"l2": 0.0}, "l2 must be > 0, got 0.0"),
    ({"l2": float("nan")}, "l2 must be > 0"),
    ({"l2_exponent": -0.5}, "l2_exponent must be >= 0, got -0.5"),
    ({"rho": -1.0}, "rho must be > 0, got -1.0"),
    ({"iterations": 0}, "iterations must be >= 1, got 0"),
    ({"eps_abs": -1e-3}, "eps_abs and eps_rel must be >= 0"),
    ({"eps_rel": -1e-3}, "eps_abs and eps_rel must be >= 0"),
    ({"max_items": 0}, "max_items must be >= 1, got 0"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdmmSlim(**kwargs)
