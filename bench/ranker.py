"""``recpipe bench ranker``: the ranker in the pipeline against retrieval-only scoring, and
the CTR check of the torchrec models, both on MovieLens 100K.

Usage::

    recpipe bench ranker [--part pipeline|ctr|all] [--json OUT] [--seed N] [--epochs N]
                         [--lake DIR] [--models dlrm,dcn] [--data-dir DIR] [--keep-neutral]

Part ``pipeline`` (the measured part of the ranker issue), temporal split: a lake (a fresh
temporary one, or ``--lake DIR``, reused when it already holds the candidates) gets the
nightly stages up to the candidates for D1 = 1998-04-08 and D2 = 1998-04-22 with
``matrix.holdout_days = 14`` and ``ranker.label_days = 14``; the examples of D2 (candidates
of D1 labelled by 1998-03-26 .. 1998-04-08) train the ranker (``ranker.*`` settings, MLflow
in the temporary folder); the top-N of D2 (surface ``home_feed``, business rules included)
is computed from the same candidates ordered three ways: as served (the ranker fused with
the retrieval order, with the weight training chose on its own validation users, never on
the holdout; ``ranker.retrieval_weight``), by the ranker alone, and by the retrieval
blend (the baseline); all are scored on the holdout 1998-04-09 .. 1998-04-22 with
``evaluation.holdout`` / ``evaluation.metrics`` (NDCG@10, recall@100; ratings >= 4 are
relevant). ``--seeds 42,1,2`` trains one ranker per seed (the seed also draws the validation
users) and reports means: the holdout has about 80 users, one seed is noisy. Also: AUC and
log loss of the held-out example users, training samples/s, and batch-inference samples/s
(encode + forward of the exported TorchScript model, and the whole Spark
``ranked_candidates`` pass, features included).

Part ``ctr``, protocol (RecBole's context-aware setup): one example per rating; ratings of 3
are dropped (``--keep-neutral`` keeps them as negatives, as RecBole's packaged ml-100k
config does); label = rating >= 4. Features: user, item, age, gender, occupation, genres
(multi-hot) and release year as tokens, plus age and release year as standardised numbers
(DLRM needs a dense input). Random 80/10/10 split of the examples with the seed; early
stopping on validation AUC; AUC and log loss on test, training samples/s and inference
samples/s. Printed beside RecBole's published ML-1M figures: a different, larger dataset, so
an order of magnitude check, not a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conf import Settings, load_settings
from conf.errors import UsageError

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


def build_parser() -> argparse.ArgumentParser:
    """The ``recpipe bench ranker`` argument parser."""
    parser = argparse.ArgumentParser(prog="recpipe bench ranker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["pipeline", "ctr", "all"], default="all",
                        help="which measurement to run (default: both)")
    parser.add_argument("--json", type=Path, help="write the full result as JSON here")
    parser.add_argument("--seed", type=int, help="split and model seed (default: ranker.seed)")
    parser.add_argument("--models", default="dlrm,dcn", help="ctr: comma-separated dlrm, dcn")
    parser.add_argument("--epochs", type=int, help="most epochs (default: ranker.epochs)")
    parser.add_argument("--data-dir", type=Path,
                        help="ctr: ML-100K Parquet folder (default: <data_dir>/movielens-100k)")
    parser.add_argument("--keep-neutral", action="store_true",
                        help="ctr: keep ratings of 3 as negatives instead of dropping them")
    parser.add_argument("--seeds", help="pipeline: comma-separated seeds, one ranker each; "
                        "the figures are their means (default: --seed)")
    parser.add_argument("--architecture", choices=["dlrm", "dcn"],
                        help="pipeline: the ranker's architecture (default: ranker setting)")
    parser.add_argument("--windows", type=int,
                        help="pipeline: label windows the ranker trains on (default: "
                             "ranker.example_windows); each needs the candidates of one more "
                             "earlier date")
    parser.add_argument("--lake", type=Path,
                        help="pipeline: lake folder to build or reuse (default: a temporary "
                             "folder, removed afterwards)")
    return parser


# -- part "pipeline": the ranker in the pipeline against retrieval-only ---------------------
PIPELINE_DATES = ("1998-04-08", "1998-04-22")
"""D1 (the labelled candidates) and D2 (the ranker's date, evaluated on its holdout)."""
HOLDOUT_DAYS = 14
LABEL_DAYS = 14
SURFACE = "home_feed"


@contextmanager
def environment(values: dict[str, str]):
    """Set environment variables inside the block (the stages load their own settings)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stages_up_to(target: str) -> list:
    """The nightly stages ``target`` depends on (itself included), in run order."""
    from recpipe.run import ordered
    from recpipe.stages import NIGHTLY

    by_id = {s.task_id: s for s in NIGHTLY}
    needed, todo = set(), [target]
    while todo:
        task = todo.pop()
        if task not in needed:
            needed.add(task)
            todo.extend(by_id[task].upstream)
    return [s for s in ordered(NIGHTLY) if s.task_id in needed]


def lake_dates(settings: Settings) -> list[str]:
    """The dates whose candidates the pipeline part needs, oldest first: D2, and the
    candidates' date of each label window the ranker of D2 trains on."""
    from training.labels import label_window, window_dates

    d2 = PIPELINE_DATES[1]
    return sorted({d2, *(label_window(settings, e).source_ds
                         for e in window_dates(settings, d2))})


def prepare_lake(settings: Settings, landing: Path) -> None:
    """Run the nightly stages up to the candidates for each date missing its candidates
    (:func:`lake_dates`, oldest first)."""
    from jobs.lake import Lake
    from recpipe.cli import main as recpipe_main

    lake = Lake(settings)
    for ds in lake_dates(settings):
        if ds in lake.partitions("gold/candidates"):
            logger.info("the lake already holds the candidates of %s", ds)
            continue
        for stage in stages_up_to("candidates"):
            argv = stage.argv(ds=ds, landing=str(landing), dataset="movielens-100k")
            logger.info("bench ranker: recpipe %s", " ".join(argv))
            code = recpipe_main(argv)
            if code:
                raise RuntimeError(f"recpipe {' '.join(argv)} failed with exit code {code}")


def surface_metrics(topn: pa.Table, holdout: Any, k_ndcg: int = 10, k_recall: int = 100
                    ) -> dict[str, float]:
    """NDCG@k_ndcg and recall@k_recall of one surface's lists on the holdout users."""
    from evaluation.holdout import padded_lists
    from evaluation.metrics import ranking_metrics

    upos = {u: i for i, u in enumerate(holdout.user_ids)}
    users = np.array([upos.get(u, -1) for u in topn["user_id"].to_pylist()], np.int64)
    recs = padded_lists(users, holdout.items.rows(topn["item_id"]),
                        topn["rank"].to_numpy(), holdout.n_users, max(k_ndcg, k_recall))
    return {f"ndcg@{k_ndcg}": ranking_metrics(recs, holdout.truth, k_ndcg)["ndcg"],
            f"recall@{k_recall}": ranking_metrics(recs, holdout.truth, k_recall)["recall"]}


def candidate_metrics(candidates: pa.Table, holdout: Any, k: int = 10) -> float:
    """NDCG@k of the candidates ordered by ``score`` alone (no business rules)."""
    from evaluation.holdout import padded_lists
    from evaluation.metrics import ranking_metrics

    upos = {u: i for i, u in enumerate(holdout.user_ids)}
    users = np.array([upos.get(u, -1) for u in candidates["user_id"].to_pylist()], np.int64)
    recs = padded_lists(users, holdout.items.rows(candidates["item_id"]),
                        -candidates["score"].to_numpy(), holdout.n_users, k)
    return ranking_metrics(recs, holdout.truth, k)["ndcg"]


def topn_table(spark: Any, scored: Any, settings: Settings, ds: str) -> pa.Table:
    """The ``SURFACE`` lists of ``ds`` from scored candidates (``jobs.topn.transform``)."""
    from jobs.asof import latest_partition_at_or_before
    from jobs.lake import Lake
    from jobs.topn import item_meta, transform

    lake = Lake(settings)
    items_ds = latest_partition_at_or_before(lake, "silver/items", ds)
    items = lake.read_arrow("silver/items", [items_ds] if items_ds else [],
                            columns=["item_id", "available", "boost", "categories"])
    meta = spark.sparkContext.broadcast(item_meta(items))
    rows = transform(scored, meta, dict(settings.surfaces), settings.seed, ds,
                     max(1, settings.spark.shuffle_partitions)).toArrow()
    return rows.filter(pc.equal(rows["surface"], SURFACE))


def infer_rate(export: Path, table: pa.Table, batch_size: int) -> float:
    """Samples/s of encode + forward with the exported TorchScript model over ``table``."""
    from algorithms.ranker.artifact import load_ranker

    ranker = load_ranker(export)
    ranker.score_table(table.slice(0, min(batch_size, table.num_rows)), batch_size)  # warm-up
    start = time.perf_counter()
    ranker.score_table(table, batch_size)
    return table.num_rows / (time.perf_counter() - start)


def score_seed(spark: Any, settings: Settings, featured: Any, candidates: Any, holdout: Any,
               mlflow_cfg: Any, examples: pa.Table) -> dict[str, Any]:
    """Train the ranker of D2 with ``settings`` (its seed and model folder), rank the
    featured candidates with it and score both top-N lists' ranked side on the holdout."""
    from algorithms.ranker.artifact import read_manifest
    from jobs.rank_candidates import export_dir, fusion_weight, score_featured
    from training.cli import run_train_ds

    d2 = PIPELINE_DATES[1]
    started = time.perf_counter()
    trained = run_train_ds(settings, d2, mlflow_cfg)
    train_seconds = time.perf_counter() - started
    export = export_dir(settings, d2)
    weight = fusion_weight(settings, read_manifest(export, verify=False))
    figures: dict[str, float] = {}
    for suffix, w in (("ranked", weight), ("ranker_only", 0.0)):
        if suffix == "ranker_only" and weight == 0.0:
            figures.update({k.replace("ranked", "ranker_only"): v for k, v in figures.items()})
            break
        scored = score_featured(featured, export, candidates.schema, settings, w).persist()
        started = time.perf_counter()
        rows = scored.count()
        if suffix == "ranked":
            score_seconds = time.perf_counter() - started
        top = surface_metrics(topn_table(spark, scored, settings, d2), holdout)
        figures[f"ndcg@10_{suffix}"] = top["ndcg@10"]
        figures[f"recall@100_{suffix}"] = top["recall@100"]
        figures[f"candidates_ndcg@10_{suffix}"] = candidate_metrics(scored.toArrow(), holdout)
        scored.unpersist()
    m = trained["metrics"]
    return {
        "seed": settings.ranker.seed,
        "retrieval_weight": weight,
        **figures,
        "auc": m["valid_auc"], "logloss": m["valid_logloss"],
        "train_samples_per_s": m["train_samples_per_s"],
        "infer_samples_per_s": infer_rate(export, examples, settings.ranker.eval_batch_size),
        "score_rows_per_s": rows / score_seconds,
        "training": {k: m[k] for k in ("best_epoch", "epochs_run", "train_rows", "valid_rows",
                                       "valid_ndcg_at_10_ranked",
                                       "valid_ndcg_at_10_retrieval",
                                       "valid_ndcg_at_10_fused")},
        "valid_ndcg_at_10_by_weight": {k.rsplit("_w", 1)[1]: v for k, v in m.items()
                                       if k.startswith("valid_ndcg_at_10_fused_w")},
        "registered": trained.get("registered"),
        "seconds": {"train": train_seconds, "score": score_seconds},
    }


def run_pipeline(settings: Settings, lake_dir: Path, seeds: list[int], epochs: int | None,
                 architecture: str | None = None, windows: int | None = None
                 ) -> dict[str, Any]:
    """The measured part: ranked vs retrieval-only top-N on the holdout of D2.

    One ranker per seed (the seed draws the validation users and initialises the model);
    the headline figures are means over the seeds, each seed's figures are kept too.
    """
    from conf import load_settings
    from conf.gate import MlflowSettings, eval_sections
    from evaluation.holdout import build_holdout
    from evaluation.offline import read_inputs
    from jobs.lake import Lake
    from jobs.ranker_features import add_features, feature_inputs
    from jobs.spark import get_spark
    from jobs.tables import EXAMPLES
    from training.examples import run as build_examples
    from training.labels import window_dates

    d1, d2 = PIPELINE_DATES
    lake_dir.mkdir(parents=True, exist_ok=True)
    env = {"RECPIPE_LAKE_ROOT": str(lake_dir / "lake"),
           "RECPIPE_MATRIX__HOLDOUT_DAYS": str(HOLDOUT_DAYS),
           "RECPIPE_RANKER__LABEL_DAYS": str(LABEL_DAYS),
           "RECPIPE_RUNS_DIR": str(lake_dir / "runs"),
           # the landing file holds all of MovieLens: on an early date every later rating is
           # a quarantined future event (24 % on 1998-02-25), which is expected here
           "RECPIPE_INGEST__MAX_QUARANTINE_SHARE": "0.5"}
    if epochs is not None:
        env["RECPIPE_RANKER__EPOCHS"] = str(epochs)
    if architecture is not None:
        env["RECPIPE_RANKER__ARCHITECTURE"] = architecture
    if windows is not None:
        env["RECPIPE_RANKER__EXAMPLE_WINDOWS"] = str(windows)
    with environment(env):
        settings = load_settings(env=settings.env)
        windows = settings.ranker.example_windows
        started = time.perf_counter()
        prepare_lake(settings, lake_dir / "landing")
        pipeline_seconds = time.perf_counter() - started
        spark = get_spark(settings)
        lake = Lake(settings)
        started = time.perf_counter()
        built = [build_examples(spark, settings, ds) for ds in window_dates(settings, d2)]
        examples_seconds = time.perf_counter() - started
        skipped = [f"{b['ds']}: {b['skipped']}" for b in built if "skipped" in b]
        if skipped:
            raise RuntimeError(f"no ranker examples for {'; '.join(skipped)}")
        examples = {"label_window": built[0]["label_window"],
                    "label_windows": [b["label_window"] for b in built],
                    "rows": sum(b["rows"] for b in built),
                    "positives": sum(b["positives"] for b in built),
                    "users": sum(b["users"] for b in built),
                    "by_origin": {k: sum(b["by_origin"].get(k, 0) for b in built)
                                  for k in {o for b in built for o in b["by_origin"]}}}
        example_rows = lake.read_arrow(EXAMPLES.name, [d2])
        mlflow_cfg = MlflowSettings(tracking_uri=f"sqlite:///{lake_dir / 'mlflow.db'}",
                                    artifact_root=str(lake_dir / "mlflow-artifacts"))
        inputs = read_inputs(lake, settings, d2)
        holdout = build_holdout(inputs.events, inputs.train, inputs.catalogue,
                                eval_sections(settings).offline, settings.seed)
        candidates = lake.read_spark(spark, "gold/candidates", [d2])
        retrieval = surface_metrics(topn_table(spark, candidates, settings, d2), holdout)
        retrieval_candidates = candidate_metrics(candidates.toArrow(), holdout)
        started = time.perf_counter()
        featured = add_features(candidates, feature_inputs(spark, lake, settings, d2)).persist()
        featured_rows = featured.count()
        feature_seconds = time.perf_counter() - started
        per_seed = []
        for seed in seeds:
            rs = settings.ranker.model_copy(update={
                "seed": seed, "model_dir": str(lake_dir / "models" / f"seed-{seed}")})
            per_seed.append(score_seed(spark, settings.model_copy(update={"ranker": rs}),
                                       featured, candidates, holdout, mlflow_cfg,
                                       example_rows))
        featured.unpersist()

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in per_seed]))

    first = per_seed[0]
    result: dict[str, Any] = {
        "ndcg@10_ranked": mean("ndcg@10_ranked"),
        "ndcg@10_retrieval": retrieval["ndcg@10"],
        "recall@100_ranked": mean("recall@100_ranked"),
        "recall@100_retrieval": retrieval["recall@100"],
        "auc": mean("auc"),
        "logloss": mean("logloss"),
        "train_samples_per_s": mean("train_samples_per_s"),
        "infer_samples_per_s": mean("infer_samples_per_s"),
        "rank_candidates_rows_per_s": featured_rows / (
            feature_seconds + first["seconds"]["score"]),
        "candidates_ndcg@10_ranked": mean("candidates_ndcg@10_ranked"),
        "candidates_ndcg@10_retrieval": retrieval_candidates,
        "ndcg@10_ranker_only": mean("ndcg@10_ranker_only"),
        "recall@100_ranker_only": mean("recall@100_ranker_only"),
        "candidates_ndcg@10_ranker_only": mean("candidates_ndcg@10_ranker_only"),
        "retrieval_weight": settings.ranker.retrieval_weight,
        "retrieval_weights_chosen": [r["retrieval_weight"] for r in per_seed],
        "ndcg@10_ranked_min": float(min(r["ndcg@10_ranked"] for r in per_seed)),
        "seeds": seeds,
        "per_seed": per_seed,
        "holdout_users": holdout.n_users,
        "surface": SURFACE,
        "dates": {"candidates": d1, "ranker": d2, "label_window": examples["label_window"],
                  "label_windows": examples["label_windows"], "holdout_days": HOLDOUT_DAYS},
        "examples": {k: examples[k] for k in ("rows", "positives", "users", "by_origin")},
        "example_windows": windows,
        "architecture": settings.ranker.architecture,
        "seconds": {"pipeline_to_candidates": pipeline_seconds, "examples": examples_seconds,
                    "features": feature_seconds},
    }
    base = result["ndcg@10_retrieval"]
    result["ndcg@10_gain"] = result["ndcg@10_ranked"] - base
    result["ndcg@10_gain_relative"] = (result["ndcg@10_ranked"] / base - 1) if base else math.nan
    return result


def _weights(r: dict[str, Any]) -> str:
    chosen = sorted(set(r["retrieval_weights_chosen"]))
    return "/".join(format(w, "g") for w in chosen)


def _earlier_windows(r: dict[str, Any]) -> str:
    earlier = r["dates"].get("label_windows", [])[1:]
    if not earlier:
        return ""
    return f" and {len(earlier)} earlier windows from {earlier[-1][0]} ({r['examples']['users']} "\
        "user-windows)"


def format_pipeline(r: dict[str, Any]) -> str:
    """The printed comparison of the pipeline part."""
    d = r["dates"]
    seeds = r["seeds"]
    lines = [
        f"MovieLens 100K, temporal split: holdout {d['holdout_days']} days up to "
        f"{d['ranker']} ({r['holdout_users']} users), surface {r['surface']}; ranker "
        f"({r['architecture']}) trained on the candidates of {d['candidates']} labelled "
        f"{d['label_window'][0]} .. {d['label_window'][1]}"
        f"{_earlier_windows(r)}; "
        f"{'mean of seeds ' + ','.join(map(str, seeds)) if len(seeds) > 1 else f'seed {seeds[0]}'}",
        f"{'top-N ordered by':<26}{'NDCG@10':>9}{'recall@100':>12}",
        f"{'retrieval blend (baseline)':<26}{r['ndcg@10_retrieval']:>9.4f}"
        f"{r['recall@100_retrieval']:>12.4f}",
        f"{'ranker + retrieval (w=' + _weights(r) + ')':<26}"
        f"{r['ndcg@10_ranked']:>9.4f}{r['recall@100_ranked']:>12.4f}",
        f"{'ranker alone':<26}{r['ndcg@10_ranker_only']:>9.4f}"
        f"{r['recall@100_ranker_only']:>12.4f}",
    ]
    if len(seeds) > 1:
        lines.append("  per seed NDCG@10 (fused / alone, weight): " + ", ".join(
            f"{p['seed']}: {p['ndcg@10_ranked']:.4f} / {p['ndcg@10_ranker_only']:.4f}, "
            f"w={p['retrieval_weight']:g}" for p in r["per_seed"]))
    lines += [
        f"ranker vs retrieval-only NDCG@10: {r['ndcg@10_gain']:+.4f} "
        f"({100 * r['ndcg@10_gain_relative']:+.1f} %); candidates without business rules: "
        f"{r['candidates_ndcg@10_ranked']:.4f} (alone {r['candidates_ndcg@10_ranker_only']:.4f})"
        f" vs {r['candidates_ndcg@10_retrieval']:.4f}",
        f"held-out example users: AUC {r['auc']:.4f}, log loss {r['logloss']:.4f}; training "
        f"{r['train_samples_per_s']:,.0f} samples/s; batch inference "
        f"{r['infer_samples_per_s']:,.0f} samples/s (encode + forward), "
        f"{r['rank_candidates_rows_per_s']:,.0f} rows/s (Spark pass, features included)",
    ]
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


def parse_seeds(text: str) -> list[int]:
    """``"42,1,2"`` -> ``[42, 1, 2]``.

    Raises:
        UsageError: an entry is not an integer, or none is given.
    """
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise UsageError(f"--seeds must list at least one seed, got {text!r}")
    return seeds


def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts, print their tables, write the JSON; return the result.

    The pipeline part's figures are the top-level keys (``ndcg@10_ranked``, ...); the CTR
    check's result sits under ``ctr``.
    """
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in ("dlrm", "dcn")]
    if bad or not models:
        raise UsageError(f"--models must list dlrm and/or dcn, got {args.models!r}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    if args.windows is not None and args.windows < 1:
        raise UsageError(f"--windows must be >= 1, got {args.windows}")
    seed = settings.ranker.seed if args.seed is None else args.seed
    seeds = parse_seeds(args.seeds) if args.seeds else [seed]
    result: dict[str, Any] = {}
    if args.part in ("pipeline", "all"):
        tmp = None if args.lake else Path(tempfile.mkdtemp(prefix="recpipe-bench-ranker-"))
        try:
            result.update(run_pipeline(settings, args.lake or tmp, seeds, args.epochs,
                                       args.architecture, args.windows))
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        print(format_pipeline(result))
    if args.part in ("ctr", "all"):
        result["ctr"] = run_ctr(settings, args, models, seed)
        print(format_table(result["ctr"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        logger.info("wrote %s", args.json)
    return result


def main(argv: list[str]) -> int:
    """Entry point of ``recpipe bench ranker``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the problem
        return int(exc.code or 0)
    run(load_settings(), args)
    return 0
