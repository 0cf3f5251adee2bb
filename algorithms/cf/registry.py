"""Build a model by its short name: ``ials``, ``ease``, ``itemknn``, ``popularity``."""

from __future__ import annotations

from typing import Any

from algorithms.cf.als import ImplicitALS
from algorithms.cf.base import Recommender
from algorithms.cf.ease import EASE
from algorithms.cf.itemknn import ItemKNN
from algorithms.cf.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (ImplicitALS, EASE, ItemKNN, Popularity)
}
"""Model classes by short name."""

SEEDED = {"ials"}
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
