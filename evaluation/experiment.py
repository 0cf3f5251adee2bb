"""The statistics of an online experiment: per variant click-through and conversion with 95%
intervals over users, the difference to the control with its interval, and a sample-ratio
check of the assignment.

Inputs are impressions (``recommendation_id, user_id, variant``: one row per answer shown)
and attributed events (``recommendation_id, event_type``). Impressions of one user are
correlated, so every interval treats the user as the unit: a variant's click-through is the
ratio ``sum(clicks) / sum(impressions)`` over its users, and its variance comes from the
delta method on the per-user totals (Deng et al., "Applying the Delta Method in Metric
Analytics", KDD 2018) rather than from a binomial over impressions, which would be far too
narrow. Only per-user totals and five sums per variant are kept, so memory grows with the
users of an experiment, not with its impressions.

The sample-ratio check compares the users per variant with the configured shares (a
chi-square test); a p-value below ``SRM_ALPHA`` means the assignment or the logging is
broken and the figures must not be trusted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Z95 = 1.959963984540054
SRM_ALPHA = 0.001
CLICK_TYPES = ("click",)
CONVERSION_TYPES = ("purchase",)


@dataclass
class Ratio:
    """A ratio of sums over users with its 95% interval (delta method)."""

    value: float
    low: float
    high: float
    variance: float


def ratio_over_users(num: np.ndarray, den: np.ndarray) -> Ratio:
    """``sum(num) / sum(den)`` over users, with the delta-method variance of the ratio.

    Args:
        num, den: per-user totals (N,), e.g. clicks and impressions.
    """
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n = num.size
    if n == 0 or den.sum() == 0:
        return Ratio(float("nan"), float("nan"), float("nan"), float("nan"))
    r = num.sum() / den.sum()
    if n < 2:
        return Ratio(float(r), float("nan"), float("nan"), float("nan"))
    mean_den = den.mean()
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * mean_den ** 2)
    half = Z95 * math.sqrt(max(var, 0.0))
    return Ratio(float(r), float(r - half), float(r + half), float(var))


@dataclass
class VariantFigures:
    variant: str
    users: int
    impressions: int
    clicks: int
    conversions: int
    ctr: Ratio
    conversion: Ratio


@dataclass
class Difference:
    """``variant`` minus the control, per metric: (difference, low, high)."""

    variant: str
    ctr: tuple[float, float, float]
    conversion: tuple[float, float, float]


@dataclass
class ExperimentReport:
    name: str
    control: str
    variants: list[VariantFigures] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    srm_p_value: float = float("nan")
    expected_shares: dict[str, float] = field(default_factory=dict)

    @property
    def srm_failed(self) -> bool:
        return not math.isnan(self.srm_p_value) and self.srm_p_value < SRM_ALPHA

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "srm_failed": self.srm_failed}


def user_totals(impressions: pa.Table, events: pa.Table) -> pa.Table:
    """Per (variant, user): impressions, and the clicks and conversions attributed to them
    through ``recommendation_id``. Users with impressions but no event count with zeros."""
    shown = impressions.group_by(["variant", "user_id"]).aggregate(
        [("recommendation_id", "count")]).rename_columns(["variant", "user_id", "impressions"])
    owner = impressions.select(["recommendation_id", "variant", "user_id"])
    counted = []
    for name, types in (("clicks", CLICK_TYPES), ("conversions", CONVERSION_TYPES)):
        hits = events.filter(pc.is_in(events["event_type"], pa.array(types, pa.string())))
        hits = hits.select(["recommendation_id"]).join(owner, "recommendation_id",
                                                       join_type="inner")
        counted.append(hits.group_by(["variant", "user_id"]).aggregate(
            [("recommendation_id", "count")]).rename_columns(["variant", "user_id", name]))
    out = shown
    for table in counted:
        out = out.join(table, ["variant", "user_id"], join_type="left outer")
    for name in ("clicks", "conversions"):
        out = out.set_column(out.schema.get_field_index(name), name,
                             pc.fill_null(out[name], 0))
    return out


def srm_p_value(users: dict[str, int], shares: dict[str, float]) -> float:
    """Chi-square p-value of the users per variant against the configured shares."""
    from scipy.stats import chisquare

    names = sorted(shares)
    observed = np.array([users.get(v, 0) for v in names], dtype=np.float64)
    total = observed.sum()
    if total == 0 or len(names) < 2:
        return float("nan")
    weights = np.array([shares[v] for v in names], dtype=np.float64)
    expected = total * weights / weights.sum()
    return float(chisquare(observed, expected).pvalue)


def report(name: str, totals: pa.Table, shares: dict[str, float], control: str
           ) -> ExperimentReport:
    """The experiment's figures from :func:`user_totals` and the configured shares."""
    out = ExperimentReport(name, control, expected_shares=dict(shares))
    per: dict[str, dict[str, np.ndarray]] = {}
    for variant in sorted(shares):
        rows = totals.filter(pc.equal(totals["variant"], variant))
        cols = {c: rows[c].to_numpy().astype(np.float64)
                for c in ("impressions", "clicks", "conversions")}
        per[variant] = cols
        out.variants.append(VariantFigures(
            variant, rows.num_rows, int(cols["impressions"].sum()), int(cols["clicks"].sum()),
            int(cols["conversions"].sum()), ratio_over_users(cols["clicks"], cols["impressions"]),
            ratio_over_users(cols["conversions"], cols["impressions"])))
    by = {v.variant: v for v in out.variants}
    base = by.get(control)
    for v in out.variants:
        if base is None or v.variant == control:
            continue
        diff = []
        for metric in ("ctr", "conversion"):
            a, b = getattr(v, metric), getattr(base, metric)
            d = a.value - b.value
            half = Z95 * math.sqrt(max(a.variance + b.variance, 0.0))
            diff.append((d, d - half, d + half))
        out.differences.append(Difference(v.variant, diff[0], diff[1]))
    out.srm_p_value = srm_p_value({v.variant: v.users for v in out.variants}, shares)
    return out


def render(r: ExperimentReport) -> str:
    """The report as text."""
    lines = [f"experiment {r.name} (control {r.control})",
             f"{'variant':<14}{'users':>9}{'impressions':>13}{'CTR [95% CI]':>28}"
             f"{'conversion [95% CI]':>30}"]
    for v in r.variants:
        lines.append(f"{v.variant:<14}{v.users:>9,}{v.impressions:>13,}"
                     f"{_fmt(v.ctr.value, v.ctr.low, v.ctr.high):>28}"
                     f"{_fmt(v.conversion.value, v.conversion.low, v.conversion.high):>30}")
    for d in r.differences:
        lines.append(f"{d.variant} - {r.control}: CTR {_fmt(*d.ctr)}, conversion "
                     f"{_fmt(*d.conversion)}")
    shares = ", ".join(f"{k} {v:g}" for k, v in sorted(r.expected_shares.items()))
    verdict = "FAILED: do not trust these figures" if r.srm_failed else "ok"
    lines.append(f"sample ratio (expected {shares}): p = {r.srm_p_value:.3g} ({verdict})")
    return "\n".join(lines)


def _fmt(value: float, low: float, high: float) -> str:
    return f"{value:+.4f} [{low:+.4f}, {high:+.4f}]" if value < 0 or low < 0 else \
        f"{value:.4f} [{low:.4f}, {high:.4f}]"


def plot(r: ExperimentReport, path: str | Path) -> Path:
    """CTR and conversion per variant with their intervals, and the sample-ratio check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    names = [v.variant for v in r.variants]
    for ax, metric, title in ((axes[0], "ctr", "click-through"),
                              (axes[1], "conversion", "conversion")):
        vals = [getattr(v, metric) for v in r.variants]
        y = np.arange(len(vals))
        ax.errorbar([x.value for x in vals], y,
                    xerr=[[x.value - x.low for x in vals], [x.high - x.value for x in vals]],
                    fmt="o", capsize=4)
        ax.set_yticks(y, names)
        ax.set_title(f"{title} per impression (95% CI over users)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    ax = axes[2]
    rows = [(f"{d.variant} CTR", d.ctr) for d in r.differences] + [
        (f"{d.variant} conv.", d.conversion) for d in r.differences]
    y = np.arange(len(rows))
    ax.errorbar([v[0] for _, v in rows], y, xerr=[[v[0] - v[1] for _, v in rows],
                                                 [v[2] - v[0] for _, v in rows]],
                fmt="o", capsize=4, color="tab:green")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, [name for name, _ in rows])
    ax.set_title(f"difference to {r.control} (95% CI)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    srm = f"sample ratio p = {r.srm_p_value:.3g}" + (" FAILED" if r.srm_failed else "")
    fig.suptitle(f"experiment {r.name}: {srm}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _read(path: str | Path, columns: list[str]) -> pa.Table:
    """A Parquet or JSON-lines file (or a folder of Parquet files) with ``columns``."""
    from conf.errors import SourceError

    path = Path(path)
    if not path.exists():
        raise SourceError(f"not found: {path}")
    try:
        if path.suffix in (".jsonl", ".json"):
            import pyarrow.json as pj

            table = pj.read_json(path)
        else:
            import pyarrow.dataset as ds

            table = ds.dataset(path, format="parquet").to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path}: {exc}") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SourceError(f"{path}: missing column(s) {missing}")
    return table.select(columns).cast(pa.schema([(c, pa.string()) for c in columns]))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from conf import load_settings
    from conf.errors import UsageError

    parser = argparse.ArgumentParser(prog="recpipe experiment",
                                     description="online experiments: the report")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="per-variant CTR and conversion with intervals")
    rep.add_argument("--name", required=True, help="the experiment (settings: experiments)")
    rep.add_argument("--impressions", required=True,
                     help="impressions: recommendation_id, user_id, variant (Parquet/JSONL)")
    rep.add_argument("--events", required=True,
                     help="attributed events: recommendation_id, event_type (Parquet/JSONL)")
    rep.add_argument("--png", type=Path, help="also draw the report here")
    rep.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    settings = load_settings()
    found = [e for e in settings.experiments if e.name == args.name]
    if not found:
        known = sorted(e.name for e in settings.experiments) or "none configured"
        raise UsageError(f"no experiment {args.name!r} in the settings (known: {known})")
    exp = found[0]
    impressions = _read(args.impressions, ["recommendation_id", "user_id", "variant"])
    events = _read(args.events, ["recommendation_id", "event_type"])
    r = report(exp.name, user_totals(impressions, events), dict(exp.variants), exp.control)
    print(render(r))
    if args.png:
        print(f"picture: {plot(r, args.png)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r.to_json(), indent=2, sort_keys=True) + "\n")
    return 0
