"""A low-rank basis for wide feature rows: the top right singular vectors of a matrix by
randomized SVD (Halko, Martinsson and Tropp 2011, algorithm 4.4 with power iterations).

Used to compare items by content in ``k`` dimensions instead of the raw feature width: the
inner products of projected rows are those of the rows' components in the top-``k`` singular
subspace (latent semantic analysis), which keeps what distinguishes items and drops the
noise of rare hashed tokens. Cost ``O(rows * width * k)`` per pass, memory ``O((rows +
width) * k)`` beside the input.
"""

from __future__ import annotations

import numpy as np


def top_right_singular_vectors(x: np.ndarray, k: int, seed: int, power_iters: int = 2,
                               oversample: int = 10) -> np.ndarray:
    """(W, k') float32 orthonormal columns spanning ``x``'s top ``k'`` right singular
    vectors, ``k' = min(k, rows, width)``, best first.

    Args:
        x: (R, W) rows.
        k: the basis size wanted.
        seed: seeds the random test matrix (the same input and seed give the same basis).
        power_iters: subspace iterations (sharpen the spectrum's decay).
        oversample: extra random directions beyond ``k``.
    """
    rows, width = x.shape
    k = min(k, rows, width)
    if k == 0:
        return np.zeros((width, 0), np.float32)
    x = np.asarray(x, np.float32)
    wide = min(width, k + oversample)
    omega = np.random.default_rng(seed).standard_normal((width, wide)).astype(np.float32)
    q, _ = np.linalg.qr(x @ omega)
    for _ in range(power_iters):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    _, _, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    return np.ascontiguousarray(vt[:k].T, dtype=np.float32)
