"""Collaborative-filtering models on a user x item CSR matrix (numpy, scipy, implicit; no Spark).

Offers the base class :class:`Recommender` (``fit``, ``score``, ``recommend`` in blocks,
``user_vectors``/``item_vectors`` where they exist), the models :class:`ImplicitALS`,
:class:`EASE`, :class:`ItemKNN` and :class:`Popularity`, :func:`build_model` by name, the
exact :func:`top_k` selection. Their errors are in :mod:`conf.errors`.
"""

from jobs.cf.als import ImplicitALS
from jobs.cf.base import Recommender
from jobs.cf.ease import EASE
from jobs.cf.itemknn import ItemKNN
from jobs.cf.popularity import Popularity
from jobs.cf.registry import MODELS, build_model
from jobs.cf.topk import top_k

__all__ = [
    "EASE",
    "MODELS",
    "ImplicitALS",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "build_model",
    "top_k",
]
