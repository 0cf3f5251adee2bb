"""``recpipe content``: ``silver/items`` + ``gold/item_embeddings`` -> ``gold/item_content/ds=``.

Shapes: N items in the catalogue, n of them with ALS vectors, F content features, D the ALS
dimension.

1. Content features (sparse, F columns), one block per entry of ``features``:
   ``categories`` (vocabulary of categories held by at least ``min_df`` items), ``title``
   (words, signed-hashed into ``title_hash_dim`` buckets), ``attributes`` (``key=value``
   tokens of ``categorical_attributes``, signed-hashed into ``attribute_hash_dim``) and
   ``numeric`` (one-hot bucket per attribute of ``numeric_bins``). Token blocks are TF-IDF
   weighted (``idf = ln((1 + N) / (1 + df)) + 1``) and drop tokens held by fewer than
   ``min_df`` items; every block is L2-normalised and scaled by ``sqrt(block weight)``; each
   row is then L2-normalised: that is ``content_vector``.
2. A ridge regression ``Y ~ X W + b`` from content (X, n x F) to the ALS item vectors
   (Y, n x D), fitted on the items that have both, with an unpenalised intercept::

       W = (Xc' Xc + lambda I)^-1 Xc' Yc,   b = mean(Y) - mean(X) W   (Xc, Yc: centred)

   X' X is F x F, so the fit runs in numpy/scipy on the driver (no Spark: items x features is
   small, and X stays sparse).
3. ``vector = X W + b`` for every item, warm or cold (so content-based vectors are
   comparable across items); ``has_cf`` says whether the item had an ALS vector.

Before the final fit a seeded ``holdout_fraction`` of the warm items is held out and the mean
cosine between their predicted and true vectors is reported (beside the cosine of the mean
vector, the no-content baseline).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import scipy.linalg
import scipy.sparse as sp

from conf import Settings
from conf.errors import EmptyInput
from conf.retrieval import ContentSettings
from jobs.asof import latest_partition_at_or_before
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake, delta_dataset
from jobs.tables import ITEM_CONTENT, ITEM_EMBEDDINGS, SILVER_ITEMS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

"""Input written by the embeddings job: ``id``, ``vector`` list<float32>, ``model_version``,
``ds``. Read through its Delta metadata, so this module does not declare its schema."""


STOPWORDS = frozenset({"a", "an", "and", "at", "de", "for", "in", "la", "le", "of", "on",
                       "the", "to", "with"})
_WORD = re.compile(r"\w+")


# -- features ----------------------------------------------------------------------------
def title_tokens(title: str | None) -> list[str]:
    """Lower-cased words of a title, without stopwords and one-character words."""
    if not title:
        return []
    return [w for w in _WORD.findall(title.lower()) if len(w) > 1 and w not in STOPWORDS]


def _bucket_and_sign(token: str, dim: int) -> tuple[int, float]:
    """Stable (not salted like ``hash``) bucket in ``[0, dim)`` and sign of ``token``."""
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 == 0 else -1.0)


def token_block(docs: Sequence[Sequence[str]], min_df: int, hash_dim: int | None = None
                ) -> sp.csr_matrix:
    """TF-IDF matrix of token lists, rows L2-normalised.

    Args:
        docs: N token lists (repeats count as term frequency).
        min_df: tokens held by fewer documents are dropped.
        hash_dim: ``None``: one column per kept token, in sorted order; else the signed
            hashing trick into ``hash_dim`` columns.

    Returns:
        (N, V) float64 CSR matrix (V: kept tokens, or ``hash_dim``).
    """
    n = len(docs)
    df = Counter(t for doc in docs for t in set(doc))
    kept = sorted(t for t, c in df.items() if c >= min_df)
    idf = {t: math.log((1 + n) / (1 + df[t])) + 1.0 for t in kept}
    if hash_dim is None:
        column = {t: (j, 1.0) for j, t in enumerate(kept)}
        width = len(kept)
    else:
        column = {t: _bucket_and_sign(t, hash_dim) for t in kept}
        width = hash_dim
    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        for token, tf in Counter(doc).items():
            if token in idf:
                j, sign = column[token]
                rows.append(i)
                cols.append(j)
                vals.append(sign * tf * idf[token])
    mat = sp.csr_matrix((vals, (rows, cols)), shape=(n, width), dtype=np.float64)
    return normalize_rows(mat)


def numeric_block(values: Sequence[Sequence[str | None]], bins: Sequence[Sequence[float]]
                  ) -> sp.csr_matrix:
    """One-hot buckets of numeric attributes, rows L2-normalised.

    Args:
        values: N rows, each with one (string) value per attribute (``None``: missing).
        bins: per attribute, strictly increasing edges ``e0 < ... < ek`` (k + 2 buckets:
            ``< e0``, ``[e0, e1)``, ..., ``>= ek``).

    Returns:
        (N, sum of (len(edges) + 1)) float64 CSR; a missing or non-numeric value sets no bit.
    """
    offsets = np.cumsum([0, *(len(b) + 1 for b in bins)])
    rows, cols = [], []
    for i, row in enumerate(values):
        for a, value in enumerate(row):
            try:
                number = float(value) if value is not None else math.nan
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                rows.append(i)
                cols.append(int(offsets[a] + np.searchsorted(bins[a], number, side="right")))
    mat = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(values), offsets[-1]))
    return normalize_rows(mat)


def normalize_rows(mat: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.sqrt(np.asarray(mat.multiply(mat).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ mat)


def content_features(items: pa.Table, cfg: ContentSettings) -> sp.csr_matrix:
    """Unit-norm content features of every item (see the module docstring).

    Args:
        items: ``silver/items`` rows (``title``, ``categories``, ``attributes`` map).
        cfg: which blocks, their weights and sizes.

    Returns:
        (N, F) float64 CSR, rows in the order of ``items``.
    """
    n = items.num_rows
    attrs = [dict(a or []) for a in items.column("attributes").to_pylist()]
    blocks = []
    for name in cfg.features:
        weight = cfg.block_weights.get(name, 1.0)
        if name == "categories":
            docs = [list(c or []) for c in items.column("categories").to_pylist()]
            block = token_block(docs, cfg.min_df)
        elif name == "title":
            docs = [title_tokens(t) for t in items.column("title").to_pylist()]
            block = token_block(docs, cfg.min_df, cfg.title_hash_dim)
        elif name == "attributes":
            docs = [[f"{k}={a[k].strip()}" for k in cfg.categorical_attributes
                     if a.get(k) and a[k].strip()] for a in attrs]
            block = token_block(docs, cfg.min_df, cfg.attribute_hash_dim)
        else:
            names = sorted(cfg.numeric_bins)
            block = numeric_block([[a.get(k) for k in names] for a in attrs],
                                  [cfg.numeric_bins[k] for k in names])
        blocks.append(block * math.sqrt(weight))
    if not blocks:
        return sp.csr_matrix((n, 0))
    return normalize_rows(sp.csr_matrix(sp.hstack(blocks, format="csr")))


# -- ridge ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RidgeMap:
    """A fitted linear map from content features to the ALS space: ``y = x W + b``."""

    weights: np.ndarray
    """(F, D) float64."""
    intercept: np.ndarray
    """(D,) float64."""

    def predict(self, x: sp.csr_matrix) -> np.ndarray:
        """(N, F) features -> (N, D) float32 vectors."""
        return (np.asarray(x @ self.weights) + self.intercept).astype(np.float32)


def fit_ridge(x: sp.csr_matrix, y: np.ndarray, lam: float) -> RidgeMap:
    """Ridge regression with an unpenalised intercept, by the (F x F) normal equations.

    Args:
        x: (n, F) features (sparse; it is never densified).
        y: (n, D) targets.
        lam: L2 penalty, > 0.

    Returns:
        The fitted :class:`RidgeMap`.

    Raises:
        ValueError: shapes disagree, ``lam <= 0``, no rows, or non-finite targets.
    """
    n, f = x.shape
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"x has {n} rows but y has shape {y.shape}")
    if n == 0:
        raise ValueError("ridge needs at least one row, got 0")
    if lam <= 0:
        raise ValueError(f"ridge lambda must be > 0, got {lam}")
    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("ridge targets hold NaN or infinite values")
    mu = np.asarray(x.mean(axis=0)).ravel()
    y_bar = y.mean(axis=0)
    gram = (x.T @ x).toarray() - n * np.outer(mu, mu) + lam * np.eye(f)
    rhs = np.asarray(x.T @ y) - n * np.outer(mu, y_bar)
    weights = scipy.linalg.solve(gram, rhs, assume_a="pos") if f else np.zeros((0, y.shape[1]))
    return RidgeMap(weights, y_bar - mu @ weights)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine of two (m, D) arrays (a zero row counts as cosine 0)."""
    num = np.einsum("ij,ij->i", a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.divide(num, den, out=np.zeros_like(num), where=den > 0)))


def holdout_cosine(x: sp.csr_matrix, y: np.ndarray, lam: float, fraction: float, seed: int
                   ) -> dict[str, float] | None:
    """Fit on all but a seeded ``fraction`` of rows; cosine of predicted vs true on the rest.

    Returns:
        ``{"holdout_items", "holdout_cosine", "holdout_cosine_mean_vector"}`` (the last:
        every held-out item predicted as the training mean), or ``None`` when fewer than 2
        rows would be held out or fewer than 2 would remain.
    """
    n = x.shape[0]
    n_test = int(round(fraction * n))
    if n_test < 2 or n - n_test < 2:
        return None
    perm = np.random.default_rng(seed).permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    fitted = fit_ridge(x[train], y[train], lam)
    truth = y[test].astype(np.float64)
    mean = np.broadcast_to(y[train].mean(axis=0), truth.shape)
    return {"holdout_items": int(n_test),
            "holdout_cosine": mean_cosine(fitted.predict(x[test]).astype(np.float64), truth),
            "holdout_cosine_mean_vector": mean_cosine(mean, truth)}


# -- the job ---------------------------------------------------------------------------------
def align_embeddings(item_ids: Sequence[str], embeddings: pa.Table) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Rows of ``item_ids`` that have an embedding, and those embeddings.

    Args:
        item_ids: N catalogue ids.
        embeddings: ``id, vector`` rows (ids not in the catalogue are ignored).

    Returns:
        ``(positions, vectors)``: (n,) int64 indices into ``item_ids``, (n, D) float64.

    Raises:
        ValueError: vectors of different lengths, or NaN/infinite values.
    """
    ids = embeddings.column("id").to_pylist()
    vectors = embeddings.column("vector").to_pylist()
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise ValueError(f"item embeddings have vectors of different lengths: {sorted(dims)}")
    where = {item: i for i, item in enumerate(item_ids)}
    pairs = sorted((where[i], v) for i, v in zip(ids, vectors, strict=True) if i in where)
    dim = dims.pop() if dims else 0
    positions = np.array([p for p, _ in pairs], dtype=np.int64)
    y = np.array([v for _, v in pairs], dtype=np.float64).reshape(len(pairs), dim)
    if not np.isfinite(y).all():
        raise ValueError("item embeddings hold NaN or infinite values")
    return positions, y


def transform(items: pa.Table, embeddings: pa.Table, cfg: ContentSettings, ds: str,
              seed: int) -> tuple[pa.Table, dict]:
    """Content and ALS-space vectors for every item of ``items``.

    Args:
        items: ``silver/items`` snapshot (``item_id, title, categories, attributes``).
        embeddings: ``id, vector`` of the ALS item vectors (D dims).
        cfg: content settings.
        ds: logical date written into the rows.
        seed: seed of the holdout split.

    Returns:
        ``(table, stats)``: rows ``id, vector, content_vector, has_cf, ds`` sorted by id, and
        the fit's figures (items, warm items, F, D, holdout cosines).

    Raises:
        EmptyInput: no catalogue item has an ALS vector.
    """
    items = items.sort_by("item_id")
    item_ids = items.column("item_id").to_pylist()
    x = content_features(items, cfg)
    positions, y = align_embeddings(item_ids, embeddings)
    if positions.size == 0:
        raise EmptyInput("no catalogue item has an ALS vector: cannot map content to the "
                         "collaborative space")
    x_warm = x[positions]
    stats: dict = {"items": len(item_ids), "warm_items": int(positions.size),
                   "features": int(x.shape[1]), "dim": int(y.shape[1])}
    check = holdout_cosine(x_warm, y, cfg.ridge_lambda, cfg.holdout_fraction, seed)
    if check is not None:
        stats.update(check)
        log.info("content -> CF map: held-out cosine %.3f (mean-vector baseline %.3f) on %d "
                 "items", check["holdout_cosine"], check["holdout_cosine_mean_vector"],
                 check["holdout_items"])
    vectors = fit_ridge(x_warm, y, cfg.ridge_lambda).predict(x)
    if not np.isfinite(vectors).all():
        raise ValueError("the content -> CF map produced NaN or infinite vectors")
    has_cf = np.zeros(len(item_ids), dtype=bool)
    has_cf[positions] = True
    dim = vectors.shape[1]
    vector_col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim).cast(
        pa.list_(pa.float32()))
    if cfg.store_content_vector:
        dense = x.toarray().astype(np.float32)
        content_col = pa.FixedSizeListArray.from_arrays(
            pa.array(dense.ravel()), x.shape[1]).cast(pa.list_(pa.float32()))
    else:
        content_col = pa.nulls(len(item_ids), pa.list_(pa.float32()))
    table = pa.table({"id": pa.array(item_ids, pa.string()), "vector": vector_col,
                      "content_vector": content_col, "has_cf": pa.array(has_cf),
                      "ds": pa.array([ds] * len(item_ids), pa.string())})
    return table, stats


def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict:
    """Build ``gold/item_content/ds=<ds>`` from the item snapshot and ALS vectors as of ``ds``.

    Raises:
        EmptyInput: no item snapshot or no item embeddings at or before ``ds``, or no item
            with both.
    """
    cfg: ContentSettings = settings.content
    lake = Lake(settings)
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, ds)
    if items_ds is None:
        raise EmptyInput(f"silver/items has no snapshot at or before {ds}")
    emb_ds = latest_partition_at_or_before(lake, ITEM_EMBEDDINGS.name, ds)
    if emb_ds is None:
        raise EmptyInput(f"{ITEM_EMBEDDINGS.name} has no partition at or before {ds}")
    items = lake.read_arrow(SILVER_ITEMS.name, [items_ds],
                            ["item_id", "title", "categories", "attributes"])
    emb = (delta_dataset(lake.table(ITEM_EMBEDDINGS.name), [("ds", "=", emb_ds)])
           .to_table(columns=["id", "vector", "model_version"]))
    table, stats = transform(items, emb, cfg, ds, settings.seed)
    version = lake.overwrite_partitions(ITEM_CONTENT.name, table, [ds])
    model_versions = sorted(set(emb.column("model_version").to_pylist()) - {None})
    return {"ds": ds, "items_partition": items_ds, "embeddings_partition": emb_ds,
            "model_versions": model_versions, **stats, "version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe content", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    report = run(None, settings_from_args(args), args.ds)
    print(json.dumps(report))
    return 0
