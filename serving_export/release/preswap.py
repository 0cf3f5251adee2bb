"""Pre-swap checks: a new nightly release against the live one, on the same users, before
``CURRENT`` moves.

Lists (surface ``preswap.surface``, top ``preswap.k``) are compared for a seeded sample of at
most ``preswap.max_users`` users both releases know; a user without a precomputed list is
given the popular list of their segment, as the service would:

- ``churn``: mean share of a user's top k the new release replaces (1: all of it; a list
  shorter than k counts over its own length);
- ``coverage_ratio``: distinct items of the new lists over those of the live ones;
- ``removed_share``: share of the new top-k slots the service would drop (the item is
  unavailable, already bought, or blocked by the user's negative feedback);
- ``head_share``: share of the slots taken by the catalogue head (the first
  ``preswap.head_items`` of the new release's overall popular list), new and live;
- ``ndcg``: NDCG@k per slice (all, cold users, heavy users, each user segment) on the
  date's temporal holdout, the events after the new model's training cutoff (the live
  release, built earlier, has not seen them either), with the 95% paired bootstrap interval
  of new minus live over the slice's users (``evaluation/intervals.py``).

Each threshold of ``conf/preswap.py`` that is crossed adds a reason; any reason fails the
check. The report is written beside the release as ``<release_id>.preswap.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conf import Settings
from conf.preswap import PreswapSettings
from serving_export.release.publish import PRESWAP_SUFFIX as SUFFIX
from serving_export.release.reader import Release

log = logging.getLogger(__name__)



@dataclass
class PreswapReport:
    """The comparison of ``release_id`` with the live ``live_id``."""

    release_id: str
    live_id: str
    users: int = 0
    figures: dict[str, float] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def report_path(root: str | Path, release_id: str) -> Path:
    return Path(root) / f"{release_id}{SUFFIX}"


def read_report(root: str | Path, release_id: str) -> dict[str, Any] | None:
    """The stored pre-swap report of ``release_id``, if one was written."""
    path = report_path(root, release_id)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def shared_users(new: Release, live: Release, max_users: int, seed: int) -> list[str]:
    """A seeded sample (sorted) of at most ``max_users`` users in both releases. Only the
    sample is ever turned into Python: rows are drawn, then looked up in the live release."""
    n = len(new.user_ids)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    rows = (np.arange(n) if n <= max_users * 2
            else np.unique(rng.integers(0, n, size=max_users * 2)))
    ids = [i.decode() for i in new.user_ids[rows]]
    both = [u for u in ids if live.user_row(u) >= 0]
    if len(both) > max_users:
        both = sorted(rng.choice(np.asarray(both, dtype=object), max_users, replace=False))
    return both


def top_ids(rel: Release, surface: str, user: str, k: int) -> list[str]:
    """The user's top ``k`` item ids: the precomputed list, else their segment's popular."""
    row = rel.user_row(user)
    rows: list[int] = []
    if row >= 0 and surface in rel.surfaces:
        rows = rel.topn_rows(surface, row, k)
    if not rows:
        rows = rel.popular_for(row)[0][:k].tolist()
    return [rel.item_id(int(r)) for r in rows]


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole else 0.0


def list_figures(new: Release, live: Release, users: list[str], cfg: PreswapSettings
                 ) -> dict[str, float]:
    """``churn``, ``coverage_ratio``, ``removed_share`` and ``head_share`` (new, live)."""
    k = cfg.k
    head = {new.item_id(int(r)) for r in new.overall_popular[0][:cfg.head_items]}
    churn, removed, slots = [], 0, 0
    seen_new: set[str] = set()
    seen_live: set[str] = set()
    head_new = head_live = slots_live = 0
    for user in users:
        a, b = top_ids(new, cfg.surface, user, k), top_ids(live, cfg.surface, user, k)
        churn.append(1.0 - len(set(a) & set(b)) / max(len(a), len(b), 1))
        seen_new.update(a)
        seen_live.update(b)
        row = new.user_row(user)
        dropped = set(new.purchased_rows(row)) | set(new.blocked_rows(row))
        for item in a:
            r = new.item_row(item)
            removed += (r in dropped) or not bool(new.available[r])
        slots += len(a)
        slots_live += len(b)
        head_new += sum(i in head for i in a)
        head_live += sum(i in head for i in b)
    return {"churn": float(np.mean(churn)) if churn else 0.0,
            "coverage_new": len(seen_new), "coverage_live": len(seen_live),
            "coverage_ratio": _share(len(seen_new), len(seen_live)) if seen_live else 1.0,
            "removed_share": _share(removed, slots),
            "head_share_new": _share(head_new, slots), "head_share_live": _share(head_live,
                                                                                slots_live)}


def holdout_slices(settings: Settings, new: Release, live: Release) -> list[dict[str, Any]]:
    """NDCG@k of both releases per slice of the new release's holdout (empty when there is
    no holdout: ``matrix.holdout_days`` 0, or no event in it)."""
    from conf.errors import EmptyInput
    from evaluation.holdout import build_holdout
    from evaluation.intervals import paired_interval
    from evaluation.metrics import ranking_metrics_per_user
    from evaluation.offline import read_inputs
    from jobs.lake import Lake

    cfg = settings.preswap
    try:
        inputs = read_inputs(Lake(settings), settings, new.ds)
    except EmptyInput as exc:
        log.info("pre-swap: no holdout for ds=%s (%s); NDCG not compared", new.ds, exc)
        return []
    offline = settings.offline_eval.model_copy(update={"max_users": cfg.max_users})
    hold = build_holdout(inputs.events, inputs.train, inputs.catalogue, offline, settings.seed)
    if hold.n_users == 0:
        return []
    users = [str(u) for u in hold.user_ids]

    def ndcg(rel: Release) -> np.ndarray:
        recs = np.full((len(users), cfg.k), -1, dtype=np.int64)
        for pos, user in enumerate(users):
            rows = hold.items.rows(top_ids(rel, cfg.surface, user, cfg.k))
            recs[pos, :len(rows)] = rows
        return ranking_metrics_per_user(recs, hold.truth, cfg.k)["ndcg"]

    a, b = ndcg(new), ndcg(live)
    slices = {"all": np.ones(len(users), dtype=bool), "cold_users": hold.cold_users,
              "heavy_users": hold.heavy_users}
    codes = np.array([int(new.user_segment[r]) if (r := new.user_row(u)) >= 0 else -1
                      for u in users])
    for code, name in enumerate(new.manifest["vocab"].get("user_segments", [])):
        slices[f"segment={name}"] = codes == code
    out = []
    for name, mask in slices.items():
        n = int(mask.sum())
        entry: dict[str, Any] = {"slice": name, "users": n}
        if n:
            entry.update(ndcg_new=float(np.nanmean(a[mask])), ndcg_live=float(np.nanmean(b[mask])))
        if n >= cfg.min_slice_users:
            mean, low, high = paired_interval(a[mask], b[mask], settings.seed)
            entry.update(diff=mean, low=low, high=high)
        out.append(entry)
    return out


def compare(settings: Settings, root: str | Path, release_id: str, live_id: str
            ) -> PreswapReport:
    """Compare ``release_id`` with ``live_id``, write the report beside the release, return it.
    """
    cfg = settings.preswap
    root = Path(root)
    new = Release.load(root / release_id, verify=False)
    live = Release.load(root / live_id, verify=False)
    report = PreswapReport(release_id, live_id)
    users = shared_users(new, live, cfg.max_users, settings.seed)
    report.users = len(users)
    if users:
        f = list_figures(new, live, users, cfg)
        report.figures = f
        if f["churn"] > cfg.max_churn:
            report.reasons.append(f"churn {f['churn']:.3f} of the top {cfg.k} is above "
                                  f"preswap.max_churn {cfg.max_churn}")
        if f["coverage_ratio"] < cfg.min_coverage_ratio:
            report.reasons.append(f"coverage {f['coverage_new']} items is "
                                  f"{f['coverage_ratio']:.2f} of the live release's "
                                  f"{f['coverage_live']}, below preswap.min_coverage_ratio "
                                  f"{cfg.min_coverage_ratio}")
        if f["removed_share"] > cfg.max_removed_share:
            report.reasons.append(f"{f['removed_share']:.3f} of the top-{cfg.k} slots would be "
                                  f"dropped at serve time (unavailable, bought or blocked), "
                                  f"above preswap.max_removed_share {cfg.max_removed_share}")
        rise = f["head_share_new"] - f["head_share_live"]
        if rise > cfg.max_head_share_increase:
            report.reasons.append(f"the catalogue head's share of the slots rose by {rise:.3f} "
                                  f"({f['head_share_live']:.3f} -> {f['head_share_new']:.3f}), "
                                  f"above preswap.max_head_share_increase "
                                  f"{cfg.max_head_share_increase}")
    report.slices = holdout_slices(settings, new, live)
    for s in report.slices:
        if "high" in s and s["high"] < -cfg.ndcg_tolerance:
            report.reasons.append(f"NDCG@{cfg.k} of {s['slice']} ({s['users']} users) fell "
                                  f"{s['ndcg_live']:.4f} -> {s['ndcg_new']:.4f}, 95% interval "
                                  f"of the change [{s['low']:.4f}, {s['high']:.4f}]")
    path = report_path(root, release_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return report
