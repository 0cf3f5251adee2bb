"""Build a model by its short name (``ials``, ``ease``, ``itemknn``, ``gfcf``, ``rp3beta``,
``admmslim``, ``popularity``) and tell which ones cost the cube of a dimension."""

from __future__ import annotations

from typing import Any

from algorithms.cf.als import ImplicitALS
from algorithms.cf.base import Recommender
from algorithms.cf.ease import EASE
from algorithms.cf.graph_filter import GraphFilter
from algorithms.cf.itemknn import ItemKNN
from algorithms.cf.popularity import Popularity
from algorithms.cf.rp3beta import RP3beta
from algorithms.cf.slim import AdmmSlim

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (ImplicitALS, EASE, ItemKNN, GraphFilter, RP3beta, AdmmSlim, Popularity)
}
"""Model classes by short name."""

SEEDED = {"ials", "gfcf"}
"""Models that take a ``seed`` argument."""


def build_model(name: str, params: dict[str, Any] | None = None, seed: int = 0) -> Recommender:
    """An unfitted model ``name`` with keyword ``params`` (and ``seed`` where it has one).

    Raises:
        ValueError: unknown name or parameter (the message names it).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    kwargs = dict(params or {})
    if name in SEEDED:
        kwargs.setdefault("seed", seed)
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad parameters for model {name!r}: {kwargs} ({exc})") from exc


def cubic_dimension(name: str, shape: tuple[int, int]) -> int | None:
    """The dimension whose cube a fit of ``name`` costs on a (U, I) matrix, or None.

    EASE inverts a min(U, I) square matrix (its dual form when U < I); ADMM-SLIM multiplies
    I x I matrices on every iteration.
    """
    if name == "ease":
        return min(shape)
    if name == "admmslim":
        return shape[1]
    return None
