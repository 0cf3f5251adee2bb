"""Run one protocol: tune each model on validation, fit the final models, score the test set.

A protocol module builds a :class:`ProtocolData` (the matrices and which data each phase
fits on); :func:`run_protocol` does the rest the same way for every protocol, so the
tuning and scoring rules exist once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithms.cf import build_model, cubic_dimension
from conf.evaluation import ModelGrids, QualityBenchSettings
from evaluation.metrics import item_counts
from evaluation.protocols.scoring import evaluate
from evaluation.protocols.splits import keep_rows
from evaluation.protocols.tuning import tune

logger = logging.getLogger(__name__)

HEADLINE = ("ndcg@10", "recall@10", "ndcg@20", "recall@20", "recall@100")
"""Test metrics of the best model copied to the top of the result."""
POPULAR_HEADLINE = ("ndcg@10", "recall@100")
INTERVAL_KEYS = ("ndcg@10_low", "ndcg@10_high", "recall@100_low", "recall@100_high")
"""95% bootstrap bounds (over test users) of the best model, copied to the top."""
"""Test metrics of the popularity baseline copied to the top as ``pop_<metric>``."""


@dataclass
class ProtocolData:
    """The matrices of one protocol run, all over the same users x items.

    Tuning fits on ``tune_train`` and scores ``valid`` (ranking items not in
    ``valid_exclude``); the final models fit on ``final_train`` and score ``test`` (ranking
    items not in ``test_exclude``).
    """

    protocol: str
    tune_train: sp.csr_matrix
    valid: sp.csr_matrix
    valid_exclude: sp.csr_matrix
    final_train: sp.csr_matrix
    test: sp.csr_matrix
    test_exclude: sp.csr_matrix
    info: dict[str, Any] = field(default_factory=dict)
    """Dataset sizes and protocol notes, copied into the result."""
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    """Published reference figures by model name."""


def _model_fixed(name: str, settings: QualityBenchSettings) -> dict[str, Any]:
    return {"num_threads": settings.num_threads} if name == "ials" else {}


def run_protocol(
    data: ProtocolData, settings: QualityBenchSettings, seed: int, quick: bool = False
) -> dict[str, Any]:
    """Tune, fit and score every model of ``settings.models`` plus the popularity baseline.

    Args:
        data: the protocol's matrices.
        settings: cutoffs, grids, models and the tuning metric.
        seed: seed of every model.
        quick: use ``settings.quick_grids`` instead of ``settings.grids``.

    Returns:
        The JSON-ready result: headline keys (``ndcg@10``, ``recall@10``, ``ndcg@20``,
        ``recall@20``, ``recall@100`` of the best model on validation; ``pop_ndcg@10``,
        ``pop_recall@100``), ``best_model``, ``models`` (per model: chosen ``params``,
        ``valid`` and ``test`` metrics, ``trials``, seconds), ``published``, ``dataset``.
    """
    missing = {10, 20, 100} - set(settings.ks)
    if missing:
        raise ValueError(f"ks {settings.ks} lacks {sorted(missing)}, needed by the report")
    if not settings.models:
        raise ValueError("settings.models is empty; nothing to tune")
    start = time.perf_counter()
    grids: ModelGrids = settings.quick_grids if quick else settings.grids
    ks, metric, block = list(settings.ks), settings.tune_metric, settings.block_users
    counts = item_counts(data.final_train)
    valid = keep_rows(data.valid, settings.valid_max_users, seed)
    models: dict[str, dict[str, Any]] = {}
    for name in settings.models:
        skipped = _too_large(name, data.final_train.shape, settings)
        if skipped:
            logger.warning("%s: %s skipped: %s", data.protocol, name, skipped)
            models[name] = {"params": {}, "skipped": skipped, "valid": {}, "test": {}}
            continue
        logger.info("%s: tuning %s on validation", data.protocol, name)
        tuned = tune(name, getattr(grids, name), data.tune_train, valid,
                     data.valid_exclude, ks, metric, block, seed, _model_fixed(name, settings),
                     search=settings.search.get(name, "grid"))
        t0 = time.perf_counter()
        params = {**tuned.best_params, **_model_fixed(name, settings)}
        model = build_model(name, params, seed=seed).fit(data.final_train)
        fit_seconds = time.perf_counter() - t0
        test = evaluate(model, data.test, data.test_exclude, ks, block, counts, seed)
        logger.info("%s: %s test %s=%.4f with %s", data.protocol, name, metric,
                    test[metric], tuned.best_params)
        models[name] = {
            "params": tuned.best_params, "valid": tuned.best_valid, "test": test,
            "trials": tuned.trials, "tune_seconds": round(tuned.seconds, 2),
            "final_fit_seconds": round(fit_seconds, 2),
        }
    popular = build_model("popularity").fit(data.final_train)
    models["popularity"] = {
        "params": {},
        "valid": evaluate(build_model("popularity").fit(data.tune_train), valid,
                          data.valid_exclude, ks, block),
        "test": evaluate(popular, data.test, data.test_exclude, ks, block, counts, seed),
    }
    tuned = [n for n in settings.models if "skipped" not in models[n]]
    if not tuned:
        raise ValueError(f"every model was skipped as too large: "
                         f"{ {n: models[n]['skipped'] for n in settings.models} }")
    best = max(tuned, key=lambda n: _or_minus_inf(models[n]["valid"][metric]))
    result: dict[str, Any] = {"protocol": data.protocol, "quick": quick, "best_model": best}
    result.update({key: models[best]["test"][key] for key in HEADLINE})
    result.update({key: models[best]["test"][key] for key in INTERVAL_KEYS})
    result.update({f"pop_{key}": models["popularity"]["test"][key] for key in POPULAR_HEADLINE})
    result.update({
        "tune_metric": metric, "seed": seed, "dataset": data.info, "models": models,
        "published": data.published, "seconds": round(time.perf_counter() - start, 2),
    })
    return result


def _too_large(name: str, shape: tuple[int, int], settings: QualityBenchSettings) -> str | None:
    """Why ``name`` is not tuned on a (U, I) matrix, or None when it fits the limits."""
    dim, limit = cubic_dimension(name, shape), settings.max_cubic_dim.get(name)
    if dim is None or limit is None or dim <= limit:
        return None
    return (f"its fit costs the cube of {dim} (users x items {shape[0]} x {shape[1]}), over "
            f"evaluation.quality.max_cubic_dim[{name!r}] = {limit}")


def _or_minus_inf(value: float) -> float:
    return -np.inf if np.isnan(value) else value
