"""Collaborative-filtering models on a user x item CSR matrix (numpy, scipy, implicit; no Spark).

Offers the base class :class:`Recommender` (``fit``, ``score``, ``recommend`` in blocks,
``user_vectors``/``item_vectors`` where they exist), the models :class:`ImplicitALS`,
:class:`EASE`, :class:`ItemKNN`, :class:`GraphFilter` (GF-CF), :class:`RP3beta`,
:class:`AdmmSlim` and :class:`Popularity`, :func:`build_model` by name, the
exact :func:`top_k` selection. Their errors are in :mod:`conf.errors`.
"""

from algorithms.cf.als import ImplicitALS
from algorithms.cf.base import Recommender
from algorithms.cf.ease import EASE
from algorithms.cf.graph_filter import GraphFilter
from algorithms.cf.itemknn import ItemKNN
from algorithms.cf.popularity import Popularity
from algorithms.cf.registry import MODELS, build_model, cubic_dimension
from algorithms.cf.rp3beta import RP3beta
from algorithms.cf.slim import AdmmSlim
from algorithms.cf.topk import top_k

__all__ = [
    "AdmmSlim",
    "EASE",
    "GraphFilter",
    "MODELS",
    "ImplicitALS",
    "ItemKNN",
    "Popularity",
    "RP3beta",
    "Recommender",
    "build_model",
    "cubic_dimension",
    "top_k",
]
