"""Grid search of a model's hyper-parameters on VALIDATION data (never on test data)."""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import scipy.sparse as sp
from pydantic import BaseModel

from algorithms.cf import build_model
from evaluation.protocols.scoring import evaluate

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


def coordinate_search(
    grid: BaseModel | dict[str, Any], objective: Callable[[dict[str, Any]], float]
) -> None:
    """Greedy search over the grid, one axis at a time, until a full pass changes nothing.

    Starts at the middle value of every axis; for each axis in turn tries all its values with
    the others fixed and moves to the best. Every point tried is a grid point, so it ends
    (at a point no single-axis move improves; not necessarily the grid's best).

    Args:
        grid: as for :func:`expand_grid`.
        objective: scores a point (higher is better); called at most once per point if it
            caches, as :func:`tune`'s does.
    """
    fields = grid.model_dump() if isinstance(grid, BaseModel) else dict(grid)
    axes = {n: v for n, v in fields.items() if isinstance(v, list)}
    if any(not axis for axis in axes.values()):
        raise ValueError(f"grid has an empty axis: {axes}")
    current = {n: (v[len(v) // 2] if isinstance(v, list) else v) for n, v in fields.items()}
    best = objective(current)
    moved = True
    while moved:
        moved = False
        for name, axis in axes.items():
            for value in axis:
                point = {**current, name: value}
                score = objective(point)
                if score > best:
                    best, current, moved = score, point, True


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
    search: str = "grid",
) -> TuneResult:
    """Fit ``name`` on ``train`` at grid points, score ``valid``; keep the best.

    Args:
        name: model name (see :data:`algorithms.cf.MODELS`).
        grid: the hyper-parameter grid (lists vary).
        train: fitting matrix (U, I).
        valid: validation truth (U, I).
        exclude: items not ranked on validation (U, I), normally ``train``.
        ks: cutoffs to compute (``metric``'s k among them).
        metric: e.g. ``ndcg@10``; higher is better; ties keep the earlier trial.
        block_users: users scored at once.
        seed: model seed.
        fixed: parameters added to every grid point (e.g. ``num_threads``).
        search: ``grid`` (every combination) or ``coordinate`` (:func:`coordinate_search`).

    Returns:
        The best parameters with their validation metrics and every trial.
    """
    if search not in ("grid", "coordinate"):
        raise ValueError(f"search must be grid or coordinate, got {search!r}")
    start = time.perf_counter()
    seen: dict[tuple, dict[str, float]] = {}
    trials: list[dict[str, Any]] = []
    best: TuneResult | None = None

    def objective(params: dict[str, Any]) -> float:
        nonlocal best
        key = tuple(sorted(params.items()))
        if key not in seen:
            t0 = time.perf_counter()
            model = build_model(name, {**params, **(fixed or {})}, seed=seed).fit(train)
            values = evaluate(model, valid, exclude, ks, block_users)
            if metric not in values:
                raise ValueError(f"tuning metric {metric!r} not among {sorted(values)}")
            seconds = time.perf_counter() - t0
            seen[key] = values
            trials.append({"params": params, metric: values[metric], "seconds": round(seconds, 3)})
            logger.info("%s trial %d %s: %s=%.4f (%.1fs)", name, len(trials), params, metric,
                        values[metric], seconds)
            if best is None or _finite(values[metric]) > _finite(best.best_valid[metric]):
                best = TuneResult(name, params, values)
        return _finite(seen[key][metric])

    if search == "grid":
        for params in expand_grid(grid):
            objective(params)
    else:
        coordinate_search(grid, objective)
    assert best is not None
    best.trials, best.seconds = trials, time.perf_counter() - start
    return best


def _finite(value: float) -> float:
    return -math.inf if math.isnan(value) else value
