"""Grid search of a model's hyper-parameters on VALIDATION data (never on test data)."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import scipy.sparse as sp
from pydantic import BaseModel

from evaluation.protocols.scoring import evaluate
from jobs.cf import build_model

logger = logging.getLogger(__name__)


def expand_grid(grid: BaseModel | dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a grid: list-valued fields vary, scalar fields stay fixed.

    Example: ``{"a": [1, 2], "b": 5}`` gives ``[{"a": 1, "b": 5}, {"a": 2, "b": 5}]``.
    """
    fields = grid.model_dump() if isinstance(grid, BaseModel) else dict(grid)
    names = sorted(fields)
    axes = [fields[n] if isinstance(fields[n], list) else [fields[n]] for n in names]
    for name, axis in zip(names, axes, strict=True):
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


@dataclass
class TuneResult:
    """Outcome of a grid search."""

    model: str
    best_params: dict[str, Any]
    best_valid: dict[str, float]
    trials: list[dict[str, Any]] = field(default_factory=list)
    """One entry per combination: ``params``, the tuning metric's value, ``seconds``."""
    seconds: float = 0.0


def tune(
    name: str,
    grid: BaseModel | dict[str, Any],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: list[int],
    metric: str,
    block_users: int,
    seed: int,
    fixed: dict[str, Any] | None = None,
) -> TuneResult:
    """Fit ``name`` on ``train`` for each grid point, score ``valid``; keep the best.

    Args:
        name: model name (see :data:`jobs.cf.MODELS`).
        grid: the hyper-parameter grid (lists vary).
        train: fitting matrix (U, I).
        valid: validation truth (U, I).
        exclude: items not ranked on validation (U, I), normally ``train``.
        ks: cutoffs to compute (``metric``'s k among them).
        metric: e.g. ``ndcg@10``; higher is better; ties keep the earlier grid point.
        block_users: users scored at once.
        seed: model seed.
        fixed: parameters added to every grid point (e.g. ``num_threads``).

    Returns:
        The best parameters with their validation metrics and every trial.
    """
    start = time.perf_counter()
    result: TuneResult | None = None
    trials = []
    points = expand_grid(grid)
    for i, params in enumerate(points, start=1):
        t0 = time.perf_counter()
        model = build_model(name, {**params, **(fixed or {})}, seed=seed).fit(train)
        values = evaluate(model, valid, exclude, ks, block_users)
        if metric not in values:
            raise ValueError(f"tuning metric {metric!r} not among {sorted(values)}")
        seconds = time.perf_counter() - t0
        trials.append({"params": params, metric: values[metric], "seconds": round(seconds, 3)})
        logger.info("%s %d/%d %s: %s=%.4f (%.1fs)", name, i, len(points), params, metric,
                    values[metric], seconds)
        if result is None or values[metric] > result.best_valid[metric]:
            result = TuneResult(name, params, values)
    assert result is not None
    result.trials, result.seconds = trials, time.perf_counter() - start
    return result
