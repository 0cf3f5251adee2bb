"""Tiny tables for the ranker tests: a planted rule decides the label."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from algorithms.ranker.features import DenseFeature, FeatureSpec, SparseFeature


def planted_table(n: int, seed: int, rule: str = "item") -> pa.Table:
    """``n`` rows over 200 users and 100 items; the label is decided by ``rule``.

    ``item``: label 1 exactly for even item ids (a sparse feature decides).
    ``dense``: label 1 exactly when the dense feature ``x`` is positive.
    Other columns are noise: a gender token, a multi-hot category list, a count.
    """
    rng = np.random.default_rng(seed)
    items = rng.integers(0, 100, n)
    x = rng.normal(size=n)
    label = (items % 2 == 0) if rule == "item" else (x > 0)
    pairs = zip(rng.integers(0, 10, n), rng.integers(0, 10, n), strict=True)
    cats = [[int(a), int(b)] for a, b in pairs]
    return pa.table({
        "user_id": rng.integers(0, 200, n),
        "item_id": pa.array([f"i{i}" for i in items]),
        "gender": pa.array(rng.choice(["F", "M", "X"], n)),
        "cats": pa.array(cats, pa.list_(pa.int64())),
        "x": x,
        "cnt": rng.poisson(3.0, n).astype(np.float64),
        "label": label.astype(np.float32),
    })


def tiny_spec(cap: int = 1000) -> FeatureSpec:
    """The spec of :func:`planted_table`'s columns, tables capped at ``cap``."""
    return FeatureSpec(
        sparse=(
            SparseFeature("user_id", cap),
            SparseFeature("item_id", cap),
            SparseFeature("gender", cap),
            SparseFeature("cats", cap, multi_hot=True),
        ),
        dense=(DenseFeature("x"), DenseFeature("cnt", log1p=True)),
    )
