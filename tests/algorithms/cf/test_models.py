"""The CF models on data whose right answers are known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.cf import EASE, ImplicitALS, ItemKNN, Popularity, build_model
from algorithms.cf.als import check_factors
from conf.errors import FactorizationError, NotFittedError

N = 20  # users and items of the checkerboard


def checkerboard() -> tuple[sp.csr_matrix, dict[int, set[int]]]:
    """User u likes the items of its own parity; two of them per user are held out.

    Returns the training matrix and each user's held-out items: after excluding the
    training items, a model that learnt the two groups must recommend exactly those.
    """
    rows, cols, held = [], [], {}
    for u in range(N):
        for i in range(u % 2, N, 2):
            if (i // 2) % 5 == (u // 2) % 5:
                held.setdefault(u, set()).add(i)
            else:
                rows.append(u)
                cols.append(i)
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N, N))
    return train, held


MODELS = [
    lambda: ImplicitALS(factors=4, regularization=0.01, alpha=10.0, iterations=20, seed=1),
    lambda: EASE(l2=1.0, form="primal"),
    lambda: EASE(l2=1.0, form="dual"),
    lambda: ItemKNN(neighbors=5),
]


@pytest.mark.parametrize("make", MODELS, ids=["ials", "ease-primal", "ease-dual", "itemknn"])
def test_checkerboard_recovers_the_held_out_items(make):
    train, held = checkerboard()
    model = make().fit(train)
    users = np.arange(N)
    ids, scores = model.recommend(users, 2, exclude_csr=train, block_size=7)
    for u in users:
        assert set(ids[u].tolist()) == held[u], u
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_ease_primal_and_dual_equal_the_textbook_formula():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 30)) < 0.3).astype(np.float64)
    l2 = 5.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(30))
    weights = np.eye(30) - p / np.diag(p)
    expected = x @ weights
    for form in ("primal", "dual"):
        model = EASE(l2=l2, form=form).fit(sp.csr_matrix(x))
        np.testing.assert_allclose(model.score(np.arange(12)), expected, atol=1e-4)
    assert EASE(l2=l2).fit(sp.csr_matrix(x)).dual  # auto: 12 users < 30 items


def test_als_fold_in_solves_the_weighted_least_squares_with_one_plus_alpha_x():
    train, _ = checkerboard()
    alpha, reg = 4.0, 0.5
    model = ImplicitALS(factors=3, regularization=reg, alpha=alpha, iterations=5, seed=2)
    model.fit(train)
    y = model.item_vectors.astype(np.float64)
    row = np.zeros(N)
    row[[0, 2, 4]] = [1.0, 2.0, 1.0]
    # Hu et al.: (Y^T C Y + reg I) x = Y^T C p, C = 1 + alpha * r, p = 1 where r > 0
    conf = 1.0 + alpha * row
    pref = (row > 0).astype(np.float64)
    expected = np.linalg.solve(y.T @ (conf[:, None] * y) + reg * np.eye(3), y.T @ (conf * pref))
    got = model.fold_in(sp.csr_matrix(row[None, :]))
    np.testing.assert_allclose(got[0], expected, rtol=1e-3, atol=1e-4)
    assert model.user_vectors.shape == (N, 3)


def test_als_refuses_all_zero_factors(monkeypatch):
    from implicit.cpu.als import AlternatingLeastSquares

    def zero_fit(self, user_items, show_progress=True, callback=None):
        self.user_factors = np.zeros((user_items.shape[0], self.factors), np.float32)
        self.item_factors = np.zeros((user_items.shape[1], self.factors), np.float32)

    monkeypatch.setattr(AlternatingLeastSquares, "fit", zero_fit)
    with pytest.raises(FactorizationError, match="all zero"):
        ImplicitALS(factors=2).fit(checkerboard()[0])


def test_check_factors_refuses_nan():
    with pytest.raises(FactorizationError, match="NaN"):
        check_factors(np.array([[1.0, np.nan]]), "item factors")


def test_popularity_ranks_by_distinct_users():
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 0, 1], [1, 0, 0, 1.0]]))
    ids, scores = Popularity().fit(train).recommend(np.array([0, 1]), 3)
    np.testing.assert_array_equal(ids, [[0, 3, 1], [0, 3, 1]])
    np.testing.assert_allclose(scores[0], [3, 2, 1])


def test_itemknn_cosine_by_hand():
    # items 0 and 1 share one of their users: cosine 1 / (sqrt(2) * sqrt(1))
    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1.0]]))
    model = ItemKNN(neighbors=2).fit(train)
    assert model.similarity[0, 1] == pytest.approx(1 / np.sqrt(2))
    assert model.similarity[1, 2] == 0.0
    assert model.similarity[0, 0] == 0.0


def test_errors():
    with pytest.raises(NotFittedError):
        EASE().recommend(np.array([0]), 1)
    with pytest.raises(ValueError, match=">= 0"):
        EASE().fit(sp.csr_matrix(np.array([[1.0, -1.0]])))
    model = Popularity().fit(sp.csr_matrix(np.eye(3)))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.recommend(np.array([3]), 1)
    with pytest.raises(ValueError, match="exclude_csr must have shape"):
        model.recommend(np.array([0]), 1, exclude_csr=sp.csr_matrix(np.eye(3)))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("slim")
    with pytest.raises(ValueError, match="bad parameters"):
        build_model("ease", {"lambda": 3})
