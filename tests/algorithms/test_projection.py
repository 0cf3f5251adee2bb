"""The randomized SVD basis of wide content rows."""

from __future__ import annotations

import numpy as np

from algorithms.projection import top_right_singular_vectors


def low_rank_plus_noise(rows: int, width: int, rank: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((rows, rank))
    right = np.linalg.qr(rng.standard_normal((width, rank)))[0].T
    scale = np.linspace(10, 3, rank)[:, None]
    return (left @ (scale * right) + noise * rng.standard_normal((rows, width))).astype(
        np.float32), right


def test_the_basis_spans_the_top_singular_subspace():
    x, right = low_rank_plus_noise(2000, 300, rank=8, noise=0.01, seed=1)
    basis = top_right_singular_vectors(x, 8, seed=0)
    assert basis.shape == (300, 8)
    np.testing.assert_allclose(basis.T @ basis, np.eye(8), atol=1e-4)
    # every planted direction lies in the found subspace
    captured = np.linalg.norm(right @ basis, axis=1)
    assert captured.min() > 0.999
    exact = np.linalg.svd(x, full_matrices=False)[2][:8].T
    assert np.linalg.norm(exact.T @ basis, axis=1).min() > 0.999


def test_projected_inner_products_keep_the_neighbours():
    x, _ = low_rank_plus_noise(1000, 400, rank=16, noise=0.05, seed=2)
    basis = top_right_singular_vectors(x, 32, seed=0)
    full = x @ x[:50].T
    projected = (x @ basis) @ (x[:50] @ basis).T
    for q in range(50):
        top_full = set(np.argsort(-full[:, q])[:10])
        top_proj = set(np.argsort(-projected[:, q])[:10])
        assert len(top_full & top_proj) >= 9


def test_seeded_and_bounded_by_the_shape():
    x, _ = low_rank_plus_noise(40, 30, rank=4, noise=0.1, seed=3)
    a = top_right_singular_vectors(x, 8, seed=5)
    assert np.array_equal(a, top_right_singular_vectors(x, 8, seed=5))
    assert top_right_singular_vectors(x, 100, seed=5).shape == (30, 30)
    assert top_right_singular_vectors(x[:0], 8, seed=5).shape == (30, 0)
