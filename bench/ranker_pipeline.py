"""``recpipe bench ranker --part pipeline``: the ranker in the nightly pipeline against
retrieval-only scoring, on the holdout of MovieLens 100K (see :mod:`bench.ranker`). The lake
is built by ``recpipe run nightly --to-task candidates``, the pipeline's own runner."""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf import Settings, load_settings

logger = logging.getLogger(__name__)


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


def lake_dates(settings: Settings) -> list[str]:
    """The dates whose candidates the pipeline part needs, oldest first: D2, and the
    candidates' date of each label window the ranker of D2 trains on."""
    from training.labels import label_window, window_dates

    d2 = PIPELINE_DATES[1]
    return sorted({d2, *(label_window(settings, e).source_ds
                         for e in window_dates(settings, d2))})


def prepare_lake(settings: Settings, landing: Path) -> None:
    """Run the nightly up to the candidates (``recpipe run nightly --to-task candidates``)
    for each date missing its candidates (:func:`lake_dates`, oldest first)."""
    from jobs.lake import Lake
    from jobs.tables import CANDIDATES
    from recpipe.run import main as run_main

    lake = Lake(settings)
    for ds in lake_dates(settings):
        if ds in lake.partitions(CANDIDATES.name):
            logger.info("the lake already holds the candidates of %s", ds)
            continue
        argv = ["nightly", "--date", ds, "--to-task", "candidates",
                "--dataset", "movielens-100k", "--landing", str(landing)]
        logger.info("bench ranker: recpipe run %s", " ".join(argv))
        code = run_main(argv)
        if code:
            raise RuntimeError(f"recpipe run {' '.join(argv)} failed with exit code {code}")


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
    from jobs.item_side import read_item_context
    from jobs.lake import Lake
    from jobs.topn import transform

    meta = spark.sparkContext.broadcast(read_item_context(Lake(settings), ds, settings).meta())
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
    from training.nightly import run_train_ds

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
