"""Datasets: obtain, convert and generate the pipeline's input files.

Every tool writes the formats declared in :mod:`jobs.datasets.formats` (raw events with all
columns as strings, items, users) and checks them on write.

- :mod:`~jobs.datasets.formats`: ``RAW_EVENTS_SCHEMA``, ``ITEMS_SCHEMA``, ``USERS_SCHEMA``.
- :mod:`~jobs.datasets.fixed_split`: ``user item item ...`` files (MovieLens 1M binarized,
  ``../shared/data/ml-1m``): :func:`read_fixed_split`, :func:`fixed_split_to_events`.
- :mod:`~jobs.datasets.ml1m`: :func:`convert_ml1m`, the shared ML-1M as a nightly landing
  folder (events with SYNTHETIC timestamps, id-only items and users).
- :mod:`~jobs.datasets.loaders`: MovieLens ``u.data``, ``ratings.dat``, ``ratings.csv`` and
  generic events CSV/Parquet into raw events (``load_*`` whole, ``iter_*`` in chunks).
- :mod:`~jobs.datasets.movielens`: :func:`fetch_movielens_100k` (from the ``recbole==1.2.1``
  wheel) and :func:`convert_movielens_100k` (events, items, users).
- :mod:`~jobs.datasets.synth`: a seeded, streaming synthetic generator (power-law catalogue,
  latent tastes, sessions, all event types, cold items, inactive users).
- :mod:`~jobs.datasets.convert`: one input file -> ``events.parquet``.
- :mod:`~jobs.datasets.cli`: ``recpipe data fetch|convert|synth``
  (``fetch movielens-100k|ml-1m``).
"""

from jobs.datasets.fixed_split import fixed_split_to_events, read_fixed_split
from jobs.datasets.formats import ITEMS_SCHEMA, RAW_EVENTS_SCHEMA, USERS_SCHEMA
from jobs.datasets.loaders import (
    load_events_file,
    load_ratings_csv,
    load_ratings_dat,
    load_u_data,
)
from jobs.datasets.ml1m import convert_ml1m
from jobs.datasets.movielens import convert_movielens_100k, fetch_movielens_100k
from jobs.datasets.synth import SynthSpec, generate

__all__ = [
    "ITEMS_SCHEMA",
    "RAW_EVENTS_SCHEMA",
    "USERS_SCHEMA",
    "SynthSpec",
    "convert_ml1m",
    "convert_movielens_100k",
    "fetch_movielens_100k",
    "fixed_split_to_events",
    "generate",
    "load_events_file",
    "load_ratings_csv",
    "load_ratings_dat",
    "load_u_data",
    "read_fixed_split",
]
