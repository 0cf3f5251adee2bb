"""``recpipe gate``: may the model version of a date replace the champion?

The candidate is the ``mlflow.embeddings_model`` version registered for ``ds`` by ``recpipe
evaluate``; the champion is the version behind the ``champion`` alias. Both are loaded from
the registry and scored on the same holdout (the one of ``ds``, see
:mod:`evaluation.holdout`), beside the popularity baseline; users a model has no vector for
get the popularity list, as the service serves them. The checks
(:func:`decide`, thresholds in ``gate``): finite vectors and metrics; every gate metric at
least ``(1 + popularity_margin)`` times the baseline's and above it; no drop below ``(1 -
tolerance)`` times the champion's; catalogue coverage at ``coverage_k`` at least
``coverage_floor``. With no champion yet, the first candidate that passes the other checks
becomes champion.

The gate moves no alias: the verdict and its reasons go to ``gold/evaluation`` (stage
``gate``, readable with :func:`read_verdict`), to the evaluation run and to the candidate
version's tags, and the release layer moves ``champion`` once a release that passed is
published (:mod:`serving_export.release.promotion`), so the registry never names a champion
that is not live. The command prints the verdict as JSON and exits 1 with the reasons on
stderr when the candidate fails. Rerunning a date whose candidate is already champion
compares it with ``previous`` again (same verdict). A candidate older than the champion (a
backfill) never passes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf import Settings
from conf.errors import EmptyInput, NoCandidate
from conf.gate import EvalSections, GateSettings, eval_sections, parse_metric
from evaluation.holdout import Holdout, build_holdout
from evaluation.ids import id_array
from evaluation.metrics import catalogue_coverage, ranking_metrics_per_user
from evaluation.metrics_input import nan_mean
from evaluation.offline import evaluation_table, read_inputs, write_rows
from evaluation.stage_lists import GATE_PREFIX, model_lists, popularity_lists, read_partition
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.lake import Lake
from jobs.tables import EVALUATION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from evaluation.embedding_model import EmbeddingModel

log = logging.getLogger(__name__)

CANDIDATE, CHAMPION_ROLE, BASELINE = "candidate", "champion", "popularity"
SERVED_ROLE = "served"




@dataclass(frozen=True)
class Check:
    """One gate check: its name, outcome and a sentence saying why."""

    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Verdict:
    """The gate's decision about the model versions of one date.

    Attributes:
        ds: the date judged.
        passed: every check passed.
        reasons: the messages of the failed checks (empty when passed).
        candidate: registered version of the candidate.
        champion: registered version it was compared with (``None``: no champion yet).
        metrics: role (candidate, champion, popularity) -> metric name -> value.
        checks: every check made.
    """

    ds: str
    passed: bool
    reasons: tuple[str, ...]
    candidate: str
    champion: str | None
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN metrics become ``null``)."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["metrics"] = {role: {k: (None if v is None or math.isnan(v) else v)
                                 for k, v in values.items()}
                          for role, values in self.metrics.items()}
        return out


def _at_least(value: float, bound: float) -> bool:
    """``value >= bound``, forgiving float rounding of the bound (``0.2 * 1.1``)."""
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def _fmt(value: float) -> str:
    return "NaN" if value is None or math.isnan(value) else f"{value:.4f}"


def decide(candidate: Mapping[str, float], popularity: Mapping[str, float],
           champion: Mapping[str, float] | None, coverage: float, non_finite: int,
           cfg: GateSettings, champion_name: str = "the champion",
           served: Mapping[str, float] | None = None) -> list[Check]:
    """The gate's checks, from metric values alone (pure).

    Args:
        candidate: metric name (``ndcg@10``) -> the candidate's value, for ``cfg.metrics``.
        popularity: the same for the popularity baseline.
        champion: the same for the champion, or ``None`` when there is none.
        coverage: the candidate's catalogue coverage at ``cfg.coverage_k``.
        non_finite: NaN or infinite values in the candidate's vectors.
        cfg: thresholds.
        champion_name: how messages name the champion (e.g. ``champion v3``).
        served: the same metrics of what the release serves (``cfg.served_stage`` as
            ``recpipe evaluate`` scored it on this holdout); when given, the popularity
            check judges the served lists, and the champion check the embedding model.

    Returns:
        One :class:`Check` per condition; the candidate passes when all pass.
    """
    checks = [Check("finite_vectors", non_finite == 0,
                    "vectors are finite" if non_finite == 0 else
                    f"candidate vectors hold {non_finite} NaN or infinite values")]
    for name in cfg.metrics:
        value = candidate.get(name, float("nan"))
        if math.isnan(value):
            checks.append(Check(f"finite:{name}", False, f"candidate {name} is NaN"))
            continue
        base = popularity.get(name, float("nan"))
        need = base * (1.0 + cfg.popularity_margin)
        judged = value if served is None else served.get(name, float("nan"))
        what = name if served is None else f"served {cfg.served_stage} {name}"
        ok = not math.isnan(base) and not math.isnan(judged) and judged > base \
            and _at_least(judged, need)
        checks.append(Check(
            f"beats_popularity:{name}", ok,
            f"{what} {_fmt(judged)} {'beats' if ok else 'does not beat'} popularity "
            f"{_fmt(base)} by {cfg.popularity_margin:.0%} (needs >= {_fmt(need)})"))
        if champion is None:
            continue
        best = champion.get(name, float("nan"))
        if math.isnan(best):
            checks.append(Check(f"no_regression:{name}", True,
                                f"{champion_name} has no {name} value; not compared"))
            continue
        floor = best * (1.0 - cfg.tolerance)
        ok = _at_least(value, floor)
        checks.append(Check(
            f"no_regression:{name}", ok,
            f"{name} {_fmt(value)} {'keeps within' if ok else 'drops more than'} "
            f"{cfg.tolerance:.0%} of {champion_name}'s {_fmt(best)} (needs >= {_fmt(floor)})"))
    ok = not math.isnan(coverage) and _at_least(coverage, cfg.coverage_floor)
    checks.append(Check(
        "coverage", ok,
        f"catalogue coverage@{cfg.coverage_k} {_fmt(coverage)} "
        f"{'is at or above' if ok else 'is below'} the floor {cfg.coverage_floor:.4f}"))
    return checks


# -- scoring the registered models ----------------------------------------------------------
def score_model(model: EmbeddingModel | None, holdout: Holdout, cfg: GateSettings,
                popular: np.ndarray) -> tuple[dict[str, float], float]:
    """``({metric: value}, coverage)`` of a registered model on the holdout.

    Lists exclude the users' training items; users without a vector get ``popular``
    (U, >= K) lists, as the service serves them. Coverage is the share of the model's own
    items in some top-``coverage_k`` list of the users it has vectors for. A missing model or
    one with non-finite vectors scores NaN.
    """
    nan = {m: float("nan") for m in cfg.metrics}
    if model is None or model.non_finite() or not len(model.item_id_array):
        return nan, float("nan")
    width = popular.shape[1]
    recs = model_lists(model, holdout, width, fallback=popular)
    known = model.user_rows(holdout.user_ids) >= 0
    n_items = len(model.item_id_array)
    to_model = np.full(len(holdout.items), -1, np.int64)
    to_model[holdout.items.rows(model.item_id_array)] = np.arange(n_items)
    own = np.where(recs[known] >= 0, to_model[np.maximum(recs[known], 0)], -1)
    return (_metrics(recs, holdout, cfg), catalogue_coverage(own, n_items, cfg.coverage_k))


def _metrics(recs: np.ndarray, holdout: Holdout, cfg: GateSettings) -> dict[str, float]:
    out = {}
    for name in cfg.metrics:
        metric, k = parse_metric(name)
        per_user = ranking_metrics_per_user(recs, holdout.truth, k)
        if metric not in per_user:
            raise ValueError(f"gate metric {name!r}: unknown metric {metric!r}; known: "
                             f"{sorted(per_user)}")
        out[name] = nan_mean(per_user[metric])
    return out


def gate_rows(verdict: Verdict, holdout: Holdout, coverage: float, cfg: GateSettings
              ) -> list[dict[str, Any]]:
    """``gold/evaluation`` rows of a verdict: each role's metrics and the verdict itself."""
    rows = []
    for role, values in verdict.metrics.items():
        for name, value in values.items():
            metric, k = parse_metric(name)
            rows.append({"stage": f"{GATE_PREFIX}/{role}", "slice": "all", "metric": metric,
                         "k": k, "value": value, "users": holdout.n_users})
    rows.append({"stage": f"{GATE_PREFIX}/{CANDIDATE}", "slice": "all", "metric": "coverage",
                 "k": cfg.coverage_k, "value": coverage, "users": holdout.n_users})
    rows.append({"stage": GATE_PREFIX, "slice": "all", "metric": "passed", "k": None,
                 "value": float(verdict.passed), "users": holdout.n_users,
                 "details": json.dumps(verdict.to_json())})
    return rows


def read_verdict(lake: Lake, ds: str) -> dict[str, Any] | None:
    """The gate's verdict for ``ds`` as written to ``gold/evaluation`` (``passed``,
    ``reasons``, ``candidate``, ``champion``, ``metrics``, ``checks``), or
    ``None`` when the gate has not judged ``ds`` since its last evaluation."""
    rows = read_partition(lake, EVALUATION.name, ds, ["stage", "metric", "details"])
    if rows is None:
        return None
    mine = rows.filter(pc.and_(pc.equal(rows["stage"], GATE_PREFIX),
                               pc.equal(rows["metric"], "passed")))
    details = pc.drop_null(mine["details"])  # the gate's own row: one per judged date
    details = details.filter(pc.greater(pc.utf8_length(details), 0))
    return json.loads(details[0].as_py()) if len(details) else None


def served_metrics(lake: Lake, ds: str, cfg: GateSettings) -> dict[str, float] | None:
    """``cfg.metrics`` of ``cfg.served_stage`` (slice ``all``) as ``recpipe evaluate``
    recorded them for ``ds``, or ``None`` when not configured or not evaluated."""
    if not cfg.served_stage:
        return None
    rows = read_partition(lake, EVALUATION.name, ds, ["stage", "slice", "metric", "k",
                                                      "value"])
    if rows is None:
        return None
    served = rows.filter(pc.and_(pc.equal(rows["stage"], cfg.served_stage),  # one stage:
                                 pc.equal(rows["slice"], "all")))  # metrics x cutoffs rows
    found = {f"{r['metric']}@{r['k']}": r["value"] for r in served.to_pylist()}
    values = {name: found[name] for name in cfg.metrics if name in found}
    return values if len(values) == len(cfg.metrics) else None


def judge(candidate: EmbeddingModel, reference: EmbeddingModel | None, holdout: Holdout,
          cfg: GateSettings, reference_name: str = "the champion",
          served: Mapping[str, float] | None = None
          ) -> tuple[dict[str, dict[str, float]], float, list[Check]]:
    """Score candidate, champion and popularity on one holdout and run :func:`decide`.

    Returns:
        ``(metrics, coverage, checks)``: role (``candidate``, ``popularity``, ``champion``
        when there is one) -> metric name -> value; the candidate's coverage; the checks.
    """
    width = max([parse_metric(m)[1] for m in cfg.metrics] + [cfg.coverage_k])
    popular = popularity_lists(holdout, width)
    cand_metrics, coverage = score_model(candidate, holdout, cfg, popular)
    metrics = {CANDIDATE: cand_metrics, BASELINE: _metrics(popular, holdout, cfg)}
    if reference is not None:
        metrics[CHAMPION_ROLE] = score_model(reference, holdout, cfg, popular)[0]
    if served is not None:
        metrics[SERVED_ROLE] = dict(served)
    checks = decide(cand_metrics, metrics[BASELINE], metrics.get(CHAMPION_ROLE), coverage,
                    candidate.non_finite(), cfg, reference_name, served)
    return metrics, coverage, checks


def load_verdict(lake: Lake, ds: str) -> tuple[bool, list[str], dict[str, float]] | None:
    """``(passed, reasons, metrics)`` of the verdict for ``ds`` (for the release manifest),
    or ``None`` when the gate has not judged ``ds``.

    ``metrics`` holds the candidate's values under their names (``ndcg@10``), the other
    roles' as ``popularity.ndcg@10`` / ``champion.ndcg@10``; NaN values are left out.
    """
    verdict = read_verdict(lake, ds)
    if verdict is None:
        return None
    metrics = {}
    for role, values in verdict.get("metrics", {}).items():
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                metrics[name if role == CANDIDATE else f"{role}.{name}"] = float(value)
    return bool(verdict["passed"]), list(verdict["reasons"]), metrics


# -- the job --------------------------------------------------------------------------------
def run(spark: SparkSession | None, settings: Settings, ds: str) -> dict[str, Any]:
    """The stage: :func:`judge_date` with the evaluation settings of ``settings``, as JSON."""
    return judge_date(settings, ds).to_json()


def judge_date(settings: Settings, ds: str, sections: EvalSections | None = None) -> Verdict:
    """Judge the model version of ``ds`` and record the verdict (no alias moves here).

    Raises:
        NoCandidate: no embedding model is registered for ``ds`` (run ``recpipe evaluate``).
        EmptyInput: no holdout, no training rows or no positive holdout event.
    """
    from evaluation import registry
    from evaluation.report import log_report

    cfg = sections or eval_sections(settings)
    lake = Lake(settings)
    inputs = read_inputs(lake, settings, ds)
    name = cfg.mlflow.embeddings_model
    with registry.tracking(cfg.mlflow) as client:
        cand_v = registry.find_version(client, name, ds)
        if cand_v is None:
            raise NoCandidate(f"no {name} version is registered for ds={ds}; run "
                              f"`recpipe evaluate --ds {ds}` first")
        champ_v = registry.alias_version(client, name, registry.CHAMPION)
        already = champ_v is not None and str(champ_v.version) == str(cand_v.version)
        ref_v = registry.alias_version(client, name, registry.PREVIOUS) if already else champ_v
        candidate = registry.load_embeddings(name, cand_v.version)
        reference = None if ref_v is None else registry.load_embeddings(name, ref_v.version)
        items = pa.chunked_array([id_array(inputs.catalogue), *(
            m.item_id_array for m in (candidate, reference) if m is not None)])
        holdout = build_holdout(inputs.events, inputs.train, items, cfg.offline,
                                settings.seed)
        if holdout.n_users == 0:
            raise EmptyInput(f"no positive holdout event between {inputs.window[0]} and "
                             f"{inputs.window[1]}")
        ref_label = None if ref_v is None else f"{name} v{ref_v.version}"
        metrics, coverage, checks = judge(candidate, reference, holdout, cfg.gate,
                                          ref_label or "the champion",
                                          served_metrics(lake, ds, cfg.gate))
        ref_ds = None if ref_v is None else ref_v.tags.get(registry.TAG_DS)
        if not already and ref_ds is not None and ref_ds > ds:
            checks.append(Check("not_older_than_champion", False,
                                f"{ref_label} was built for {ref_ds}, after {ds}; an older "
                                "model is never promoted (backfill)"))
        passed = all(c.passed for c in checks)
        verdict = Verdict(ds=ds, passed=passed,
                          reasons=tuple(c.message for c in checks if not c.passed),
                          candidate=str(cand_v.version),
                          champion=None if ref_v is None else str(ref_v.version),
                          metrics=metrics, checks=tuple(checks))
        _record(client, verdict, cand_v, name, coverage, holdout, lake, cfg)
        run_id = cand_v.tags.get(registry.TAG_EVAL_RUN)
        if run_id:
            log_report(client, run_id, lake, ds, cfg)
    return verdict


def _record(client: Any, verdict: Verdict, cand_v: Any, name: str, coverage: float,
            holdout: Holdout, lake: Lake, cfg: EvalSections) -> None:
    """Write the verdict to the version's tags, the evaluation run and ``gold/evaluation``."""
    from evaluation import registry

    reasons = "; ".join(verdict.reasons)
    client.set_model_version_tag(name, cand_v.version, registry.TAG_GATE_PASSED,
                                 str(verdict.passed).lower())
    client.set_model_version_tag(name, cand_v.version, registry.TAG_GATE_REASONS,
                                 reasons[:5000] or "-")
    run_id = cand_v.tags.get(registry.TAG_EVAL_RUN)
    model_version = cand_v.tags.get(registry.TAG_MODEL_VERSION, "")
    if run_id:
        registry.log_values(
            client, run_id,
            metrics={f"gate/{role}/{m.replace('@', '_at_')}": v
                     for role, values in verdict.metrics.items() for m, v in values.items()}
            | {"gate/passed": float(verdict.passed),
               f"gate/candidate/coverage_at_{cfg.gate.coverage_k}": coverage},
            tags={registry.TAG_GATE_PASSED: str(verdict.passed).lower(),
                  registry.TAG_GATE_REASONS: reasons[:5000] or "-"})
        client.log_dict(run_id, verdict.to_json(), "gate/verdict.json")
    rows = gate_rows(verdict, holdout, coverage, cfg.gate)
    write_rows(lake, verdict.ds, evaluation_table(rows, verdict.ds, model_version, run_id),
               replace_gate_only=True)


def main(argv: list[str] | None = None) -> int:
    """``recpipe gate --ds D``: 0 when the candidate passes, 1 when it fails (reasons on
    stderr), 2 when there is nothing to judge."""
    parser = argparse.ArgumentParser(prog="recpipe gate", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds)
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    verdict = judge_date(settings, args.ds)
    print(json.dumps(verdict.to_json()))
    if not verdict.passed:
        print(f"recpipe gate: {args.ds}: candidate {verdict.candidate} REJECTED:",
              file=sys.stderr)
        for reason in verdict.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return 1
    return 0
