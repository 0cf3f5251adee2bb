"""``recpipe bench ranker --part ctr``: the CTR check of the torchrec models on MovieLens
100K, printed beside RecBole's published MovieLens 1M figures (see :mod:`bench.ranker`)."""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conf import Settings

if TYPE_CHECKING:  # training imports torch: loaded only when a model runs
    from torch import nn

    from algorithms.ranker.encoder import FeatureEncoder
    from algorithms.ranker.features import FeatureSpec

logger = logging.getLogger(__name__)

RECBOLE_ML1M = {
    "DCNV2": {"auc": 0.9000, "logloss": 0.3119},
    "DeepFM": {"auc": 0.8997, "logloss": 0.3150},
}
"""RecBole's context-aware leaderboard on MovieLens 1M (test AUC and log loss)."""

DATASET_NOTE = (
    "note: RecBole's figures are for MovieLens 1M; this run is MovieLens 100K (fewer users, "
    "items and ratings), so compare orders of magnitude, not decimals."
)




def ctr_examples(
    events: pa.Table, items: pa.Table, users: pa.Table, keep_neutral: bool = False
) -> pa.Table:
    """One labelled example per rating, with user and item features.

    Args:
        events: ``jobs.datasets`` raw events (``user_id``, ``item_id``, ``event_type``,
            ``value`` = the rating as text).
        items: ``item_id``, ``categories`` (list of genres), ``attributes`` (``release_year``).
        users: ``user_id``, ``attributes`` (``age``, ``gender``, ``occupation``).
        keep_neutral: keep ratings of 3 (as negatives) instead of dropping them.

    Returns:
        Columns ``user_id, item_id, user_age, user_gender, user_occupation, item_genres,
        item_year, age, release_year, label``; ``label`` is 1.0 for ratings >= 4.
    """
    ratings = events.filter(pc.equal(events["event_type"], "rating"))
    value = ratings["value"].cast(pa.float64()).to_numpy(zero_copy_only=False)
    keep = np.ones(len(value), bool) if keep_neutral else value != 3.0
    ex = pa.table({
        "user_id": ratings["user_id"],
        "item_id": ratings["item_id"],
        "label": pa.array((value >= 4.0).astype(np.float32)),
    }).filter(pa.array(keep))

    user_rows = _positions(users["user_id"], ex["user_id"])
    item_rows = _positions(items["item_id"], ex["item_id"])
    age = _attribute(users, "age").take(user_rows)
    year = _attribute(items, "release_year").take(item_rows)
    return pa.table({
        "user_id": ex["user_id"],
        "item_id": ex["item_id"],
        "user_age": age,
        "user_gender": _attribute(users, "gender").take(user_rows),
        "user_occupation": _attribute(users, "occupation").take(user_rows),
        "item_genres": items["categories"].take(item_rows),
        "item_year": year,
        "age": age.cast(pa.float64()),
        "release_year": year.cast(pa.float64()),
        "label": ex["label"],
    })


def _positions(keys: pa.ChunkedArray, wanted: pa.ChunkedArray) -> pa.Array:
    """Row of each ``wanted`` key in ``keys``; null where it is absent."""
    index = pd.Index(keys.to_numpy())
    pos = index.get_indexer(wanted.to_numpy())
    return pa.array(pos, mask=pos < 0)


def _attribute(table: pa.Table, key: str) -> pa.Array:
    """``attributes[key]`` of every row (a map column), null where absent."""
    return pa.array(
        [dict(m or []).get(key) for m in table["attributes"].to_pylist()], pa.string()
    )


def random_split(
    table: pa.Table, fractions: tuple[float, float, float], seed: int
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Shuffle rows with ``seed`` and cut them into train, validation and test by fraction."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(
        sum(fractions), 1.0
    ):
        raise ValueError(
            f"fractions must be three non-negative shares summing to 1, got {fractions}"
        )
    order = np.random.default_rng(seed).permutation(table.num_rows)
    n_train = int(round(fractions[0] * table.num_rows))
    n_valid = int(round(fractions[1] * table.num_rows))
    parts = np.split(order, [n_train, n_train + n_valid])
    return tuple(table.take(pa.array(p)) for p in parts)  # type: ignore[return-value]


def feature_spec(bucket_cap: int) -> FeatureSpec:
    """The ML-100K feature spec; every table capped at ``bucket_cap`` rows."""
    from algorithms.ranker.features import DenseFeature, FeatureSpec, SparseFeature

    sparse = [SparseFeature(n, bucket_cap) for n in
              ("user_id", "item_id", "user_age", "user_gender", "user_occupation", "item_year")]
    sparse.insert(5, SparseFeature("item_genres", bucket_cap, multi_hot=True))
    return FeatureSpec(sparse=tuple(sparse),
                       dense=(DenseFeature("age"), DenseFeature("release_year")))


def load_movielens(settings: Settings, data_dir: Path | None) -> tuple[pa.Table, ...]:
    """Events, items and users of ML-100K, fetched and converted on first use.

    Uses ``jobs.datasets.movielens`` (the RecBole wheel via ``pip download``); the Parquet
    files are kept in ``data_dir`` (default ``<data_dir>/movielens-100k``).
    """
    out = data_dir or settings.data_path("movielens-100k")
    names = ("events", "items", "users")
    if not all((out / f"{n}.parquet").is_file() for n in names):
        from jobs.datasets.movielens import convert_movielens_100k, fetch_movielens_100k

        src = fetch_movielens_100k(settings.data_path("cache"))
        convert_movielens_100k(src, out)
    return tuple(pq.read_table(out / f"{n}.parquet") for n in names)


def _inference_rate(
    model: nn.Module, encoder: FeatureEncoder, table: pa.Table, batch_size: int
) -> dict[str, float]:
    """Samples/s of encode + forward and of forward alone over ``table``."""
    from algorithms.ranker.scoring import score

    batches = [encoder.encode(table.slice(s, batch_size), False)
               for s in range(0, table.num_rows, batch_size)]
    score(model, batches[0])  # warm-up
    start = time.perf_counter()
    for b in batches:
        score(model, b)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    for s in range(0, table.num_rows, batch_size):
        score(model, encoder.encode(table.slice(s, batch_size), False))
    full = time.perf_counter() - start
    return {"forward_samples_per_s": table.num_rows / forward,
            "encode_forward_samples_per_s": table.num_rows / full}


def run_model(
    settings: Settings, architecture: str, splits: tuple[pa.Table, pa.Table, pa.Table],
    epochs: int | None,
) -> dict[str, Any]:
    """Train one architecture on the splits; return its test figures and speeds."""
    from algorithms.ranker.scoring import predict
    from evaluation.metrics import ctr_metrics
    from training.pipeline import fit_ranker, table_source

    update: dict[str, Any] = {"architecture": architecture}
    if epochs is not None:
        update["epochs"] = epochs
    rs = settings.ranker.model_copy(update=update)
    train, valid, test = splits
    spec = feature_spec(rs.default_bucket_size)
    start = time.perf_counter()
    fitted = fit_ranker(rs, spec, table_source(train), table_source(valid))
    seconds = time.perf_counter() - start
    size = rs.eval_batch_size
    batches = (fitted.encoder.encode(test.slice(s, size)) for s in range(0, test.num_rows, size))
    probs, labels, _ = predict(fitted.model, batches)
    metrics = ctr_metrics(probs, labels)
    return {
        "architecture": architecture,
        "test_auc": metrics["auc"],
        "test_logloss": metrics["logloss"],
        "valid_auc": fitted.result.best_auc,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": len(fitted.result.history),
        "train_samples_per_s": fitted.result.train_samples_per_s,
        **_inference_rate(fitted.model, fitted.encoder, test, size),
        "fit_seconds": seconds,
        "settings": rs.model_dump(include={
            "embedding_dim", "dense_arch_layer_sizes", "over_arch_layer_sizes",
            "dcn_num_layers", "dcn_low_rank_dim", "batch_size", "dense_lr", "sparse_lr",
            "sparse_optimizer", "epochs", "patience", "seed", "id_min_count"}),
    }


def format_table(result: dict[str, Any]) -> str:
    """The printed comparison: our runs, then RecBole's ML-1M figures, then the note."""
    lines = [
        f"MovieLens 100K CTR ({result['examples']:,} examples, split "
        f"{result['split'][0]:,}/{result['split'][1]:,}/{result['split'][2]:,}, "
        f"seed {result['seed']}, ratings of 3 {'kept' if result['keep_neutral'] else 'dropped'})",
        f"{'model':<22}{'AUC':>8}{'logloss':>9}{'train/s':>10}{'infer/s':>11}{'fwd/s':>11}",
    ]
    for r in result["models"]:
        lines.append(
            f"{'recpipe ' + r['architecture']:<22}{r['test_auc']:>8.4f}{r['test_logloss']:>9.4f}"
            f"{r['train_samples_per_s']:>10,.0f}{r['encode_forward_samples_per_s']:>11,.0f}"
            f"{r['forward_samples_per_s']:>11,.0f}"
        )
    for name, ref in RECBOLE_ML1M.items():
        lines.append(f"{'RecBole ML-1M ' + name:<22}{ref['auc']:>8.4f}{ref['logloss']:>9.4f}"
                     f"{'-':>10}{'-':>11}{'-':>11}")
    lines.append(DATASET_NOTE)
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------
def run_ctr(settings: Settings, args: argparse.Namespace, models: list[str], seed: int
            ) -> dict[str, Any]:
    """The CTR check: every model of ``models`` on the random split of the ratings."""
    settings = settings.model_copy(
        update={"ranker": settings.ranker.model_copy(update={"seed": seed})}
    )
    events, items, users = load_movielens(settings, args.data_dir)
    examples = ctr_examples(events, items, users, keep_neutral=args.keep_neutral)
    splits = random_split(examples, (0.8, 0.1, 0.1), seed)
    return {
        "dataset": "movielens-100k",
        "examples": examples.num_rows,
        "positive_rate": float(pc.mean(examples["label"]).as_py()),
        "split": [t.num_rows for t in splits],
        "seed": seed,
        "keep_neutral": args.keep_neutral,
        "models": [run_model(settings, m, splits, args.epochs) for m in models],
        "baseline": {"source": "RecBole context-aware leaderboard, MovieLens 1M",
                     "figures": RECBOLE_ML1M, "note": DATASET_NOTE},
    }
