"""GF-CF graph filter and the randomized truncated SVD against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from algorithms.cf import GraphFilter, build_model
from algorithms.cf.svd import truncated_svd


def _random_interactions(users: int, items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((users, items)) < density).astype(np.float32)
    dense[np.arange(users), rng.integers(0, items, users)] = 1.0  # every user has an item
    return sp.csr_matrix(dense)


def _dense_gfcf(x: np.ndarray, alpha: float, rank: int, norm: float) -> np.ndarray:
    """The paper's formula with dense numpy: r R~^T R~ + alpha r D^-e V^T V D^e."""
    du, di = x.sum(axis=1), x.sum(axis=0)
    su = np.where(du > 0, du, 1.0) ** -norm * (du > 0)
    si = np.where(di > 0, di, 1.0) ** -norm * (di > 0)
    normalised = su[:, None] * x * si[None, :]
    _, _, vt = np.linalg.svd(normalised)
    vt = vt[:rank]
    back = np.where(si > 0, 1.0 / np.where(si > 0, si, 1.0), 0.0)
    ideal = (x * si) @ vt.T @ (vt * back)
    return x @ normalised.T @ normalised + alpha * ideal


def test_linear_filter_matches_hand_computed_case() -> None:
    # R = [[1,1,0],[0,1,1]]: user degrees 2, 2; item degrees 1, 2, 1.
    # R~ row 0 = [1/sqrt2, 1/2, 0]; user 0's scores r_0 R~^T R~ = [0.8536, 0.8536, 0.3536].
    x = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    scores = GraphFilter(alpha=0.0).fit(x).score(np.array([0]))
    half_sqrt2 = 1 / (2 * np.sqrt(2))
    assert scores[0] == pytest.approx([0.5 + half_sqrt2, 0.5 + half_sqrt2, half_sqrt2], abs=1e-6)


@pytest.mark.parametrize("dense_max_items", [8000, 0])
def test_scores_match_dense_formula(dense_max_items: int) -> None:
    dense = _random_interactions(40, 30, 0.15, seed=3).toarray()
    dense[:, 7] = 0  # an item nobody has: no NaN, score 0 from both terms
    x = sp.csr_matrix(dense)
    model = GraphFilter(alpha=0.7, rank=5, dense_max_items=dense_max_items).fit(x)
    got = model.score(np.arange(40))
    want = _dense_gfcf(x.toarray().astype(np.float64), alpha=0.7, rank=5, norm=0.5)
    assert np.isfinite(got).all()
    assert np.allclose(got, want, atol=2e-5)
    assert np.all(got[:, 7] == 0.0)


def test_ideal_filter_changes_the_ranking() -> None:
    x = _random_interactions(60, 50, 0.1, seed=5)
    linear = GraphFilter(alpha=0.0).fit(x).score(np.arange(60))
    filtered = GraphFilter(alpha=3.0, rank=4).fit(x).score(np.arange(60))
    assert not np.array_equal(np.argsort(-linear, axis=1), np.argsort(-filtered, axis=1))


def test_build_model_passes_the_seed_and_refuses_bad_params() -> None:
    assert build_model("gfcf", {"alpha": 0.1}, seed=9).seed == 9
    for bad in ({"alpha": -1.0}, {"rank": 0}, {"norm": 0.0}, {"norm": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GraphFilter(**bad)


def test_truncated_svd_matches_dense_svd() -> None:
    rng = np.random.default_rng(0)
    left = np.linalg.qr(rng.normal(size=(300, 40)))[0]
    right = np.linalg.qr(rng.normal(size=(200, 40)))[0]
    spectrum = 2.0 ** -np.arange(40)
    matrix = sp.csr_matrix((left * spectrum) @ right.T)
    u, s, vt = truncated_svd(matrix, rank=6, seed=1, power_iterations=4, oversampling=10)
    assert s == pytest.approx(spectrum[:6], rel=1e-4)
    overlap = np.abs(vt @ right[:, :6])  # rows of vt against the true right vectors
    assert np.allclose(np.diag(overlap), 1.0, atol=1e-3)
    assert np.allclose(u.T @ u, np.eye(6), atol=1e-4)


def test_truncated_svd_refuses_a_rank_beyond_the_matrix() -> None:
    with pytest.raises(ValueError, match="rank must lie in"):
        truncated_svd(sp.csr_matrix(np.eye(4, dtype=np.float32)), rank=5, seed=0)
