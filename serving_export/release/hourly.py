"""``recpipe release hourly --ds D --hour HH [--parent ID]``: the hour's incremental release.

On its parent release (given by the DAG, which takes it from
``recpipe release parent --ds D --hour HH``; never whatever ``CURRENT`` is at the moment),
for every user with an event before the run's logical time ``ds HH:00`` that reached silver
after the nightly base release was built (see :mod:`jobs.foldin`): fold their interactions
of the look-back window (confidences of :func:`jobs.training_matrix.transform`) into user
vectors with the release's item vectors fixed, build their candidates
(:mod:`jobs.candidates`; the items of their new events are excluded), score them with the
base date's ranker and apply the surfaces' rules (:mod:`serving_export.release.refresh`);
then write an incremental release (items, similar items, popular lists and FAISS shards are
hard links, only the user side is rewritten) that inherits the parent's gate verdict, and
publish it if ``CURRENT`` is still its parent.

The parent of an hour is a function of the release history and the logical time
(:func:`choose_parent`), and the release id a function of the parent and the events read,
so a rerun of an hour builds (or finds) the same release. Nothing reads the clock.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from algorithms.window import dates_between
from conf import Settings
from conf.errors import FoldInError, ReleaseNotFound
from conf.pipeline import NEGATIVE_FEEDBACK
from jobs.cli_common import parse_ds, parse_hour
from jobs.foldin import changed_users, hour_window, merge_user_items, recent_items, release_id
from jobs.lake import Lake
from jobs.tables import SILVER_INTERACTIONS
from jobs.user_segments import segments_as_of
from serving_export.release.data import Embeddings, GateVerdict, ReleaseData
from serving_export.release.format import SUCCESS, read_manifest
from serving_export.release.publish import current_release, read_history
from serving_export.release.reader import load_release
from serving_export.release.refresh import (
    candidate_users,
    check_item_side,
    fold_users,
    refreshed_lists,
    settings_key,
    silver_since,
)
from serving_export.release.writer import write_release

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParentRelease:
    """An hourly run's parent release and the nightly release it builds on (itself when it
    is nightly).

    Attributes:
        parent_id, parent: the parent's id and manifest.
        base_id, base_ds: the nightly base release and its date.
        silver_version: the ``silver/interactions`` version the base was built from.
    """

    parent_id: str
    parent: dict[str, Any]
    base_id: str
    base_ds: str
    silver_version: int

    @classmethod
    def read(cls, root: Path, parent_id: str) -> ParentRelease:
        """Read release ``parent_id`` under ``root``.

        Raises:
            ReleaseNotFound: no complete release of that id.
            FoldInError: the base does not record the ``silver/interactions`` version it
                read, so the new events cannot be told apart.
        """
        if not (root / parent_id / SUCCESS).is_file():
            raise ReleaseNotFound(f"parent release {parent_id!r} is not a complete release "
                                  f"in {root}")
        manifest = read_manifest(root / parent_id)
        hourly = (manifest.get("extra") or {}).get("hourly")
        if hourly:
            return cls(parent_id, manifest, hourly["base"], hourly["base_ds"],
                       int(hourly["base_silver_version"]))
        version = (manifest.get("table_versions") or {}).get(SILVER_INTERACTIONS.name)
        if version is None:
            raise FoldInError(f"release {parent_id} does not record the "
                              f"{SILVER_INTERACTIONS.name} version it was built from; "
                              "cannot tell which events are new")
        return cls(parent_id, manifest, parent_id, manifest["ds"], int(version))


def logical_cutoff(manifest: dict[str, Any]) -> tuple[datetime, int]:
    """When a release's data ends, as a sortable key: a nightly release of ``ds`` holds the
    events up to the end of ``ds`` (``(ds + 1 day 00:00, 0)``); an hourly release those
    before its cutoff (``(cutoff, 1)``: at the same instant it comes after the nightly)."""
    hourly = (manifest.get("extra") or {}).get("hourly")
    if hourly:
        return datetime.fromisoformat(hourly["cutoff"]), 1
    return _day_start(manifest["ds"]) + timedelta(days=1), 0


def _day_start(ds: str) -> datetime:
    return datetime.fromisoformat(ds).replace(tzinfo=UTC)


def choose_parent(root: Path, ds: str, hour: int) -> str | None:
    """The parent of the hourly run ``(ds, hour)``: of the releases ever published (or
    rolled back to) that still exist complete, passed the gate and hold data from before the
    hour (:func:`logical_cutoff` below ``(ds hour:00, 1)``), the one published last.

    A rerun of the hour gets the same parent: releases published after it for later hours
    or dates are not before the hour; only a release published in between for an earlier
    time (a rollback) changes the choice. None when no release qualifies.
    """
    target = (_day_start(ds) + timedelta(hours=hour), 1)
    chosen, cache = None, {}
    for entry in read_history(root):
        rid = entry["release_id"]
        if rid not in cache:
            path = root / rid
            manifest = read_manifest(path) if (path / SUCCESS).is_file() else None
            cache[rid] = (manifest is not None
                          and (manifest.get("gate") or {}).get("passed") is True
                          and logical_cutoff(manifest) < target)
        if cache[rid]:
            chosen = rid
    return chosen


def run(spark: SparkSession, settings: Settings, ds: str, hour: int, parent_id: str
        ) -> dict[str, Any]:
    """Fold in, recompute and release for ``(ds, hour)`` on ``parent_id``; see the module
    docstring.

    Returns:
        A report: ``release_id``, ``parent``, ``users``, ``new_events``, ``published`` (or
        ``skipped`` with the reason when there is nothing to do).

    Raises:
        ReleaseNotFound: the parent is not a complete release.
        FoldInError: the parent has no item vectors, or the base date's gold item vectors
            are not the ones it serves.
        ReleaseError: writing or publishing failed.
    """
    from pyspark.sql import functions as F

    from jobs.training_matrix import transform as matrix_transform

    lake = Lake(settings)
    root = Path(settings.resolve(settings.serving.releases_root))
    base = ParentRelease.read(root, parent_id)
    parent, base_id, base_ds = base.parent, base.base_id, base.base_ds
    window = hour_window(ds, hour, settings.matrix.lookback_days)
    report: dict[str, Any] = {"ds": ds, "hour": hour, "parent": parent_id, "base": base_id,
                              "cutoff": window.cutoff.isoformat()}
    if (parent.get("gate") or {}).get("passed") is not True:
        return {**report, "skipped": f"the parent {parent_id} did not pass the gate"}
    if logical_cutoff(parent) >= (window.cutoff, 1):
        return {**report, "skipped": f"the parent {parent_id} holds data up to "
                                     f"{logical_cutoff(parent)[0]}, not before this hour"}

    fresh = silver_since(lake, base.silver_version, window.cutoff)
    users = changed_users(fresh)
    report.update(new_events=fresh.num_rows, users=len(users))
    if not users:
        return {**report, "skipped": "no new events"}

    rel = load_release(root / parent_id, verify=False)
    check_item_side(lake, rel, base_ds)

    # All events of the changed users in the look-back window, up to the cutoff.
    changed = spark.createDataFrame([(u,) for u in users], "user_id string")
    window_events = (lake.read_spark(spark, SILVER_INTERACTIONS.name,
                                     dates_between(lake.partitions(SILVER_INTERACTIONS.name),
                                                   window.first_date, ds))
                     .join(F.broadcast(changed), "user_id")
                     .where(F.col("ts") < F.lit(window.cutoff))
                     .cache())
    event_ids = window_events.select("event_id").toArrow().column("event_id").to_pylist()
    rid = release_id(window, base_id, event_ids, settings_key(settings))
    report["release_id"] = rid
    if (root / rid).is_dir():
        log.info("release %s already exists; not rebuilding it", rid)
    else:
        matrix = matrix_transform(window_events, settings.matrix, ds).select(
            "user_id", "item_id", "confidence").toArrow()
        vectors, has, retrieval = fold_users(rel, matrix, users, settings)
        seg_rows = segments_as_of(lake, settings, ds, users)
        segments = dict(zip(seg_rows.column("user_id").to_pylist(),
                            seg_rows.column("segment").to_pylist(), strict=True))
        recent = {r["user_id"]: r["recent"] for r in recent_items(fresh).to_pylist()}
        frame = pa.table({
            "user_id": pa.array(users, pa.string()),
            "vector": pa.array(retrieval, pa.list_(pa.float32())),
            "segment": pa.array([segments.get(u) for u in users], pa.string()),
            "recent": pa.array([recent.get(u, []) for u in users], pa.list_(pa.string())),
        })
        lists = refreshed_lists(spark, settings, lake, rel, base_ds, ds,
                                candidate_users(spark, window_events, frame, settings), users)
        previous = {u: [rel.item_id(int(r)) for r in rel.purchased(rel.user_row(u))]
                    for u in users}
        purchased = merge_user_items(previous, fresh)
        blocked = merge_user_items(
            {u: [rel.item_id(int(r)) for r in rel.blocked_rows(rel.user_row(u))]
             for u in users}, fresh, NEGATIVE_FEEDBACK)
        folded = [u for u, ok in zip(users, has, strict=True) if ok]
        data = ReleaseData(
            ds=ds,
            gate=GateVerdict(parent["gate"]["passed"] is True,
                             tuple(parent["gate"].get("reasons") or ())),
            topn=lists,
            users=pa.table({"user_id": pa.array(users, pa.string()),
                            "segment": pa.array([segments.get(u) for u in users], pa.string()),
                            "purchased": pa.array([purchased.get(u, []) for u in users],
                                                  pa.list_(pa.string())),
                            "blocked": pa.array([blocked.get(u, []) for u in users],
                                                pa.list_(pa.string()))}),
            user_embeddings=(Embeddings(ids=folded, vectors=np.asarray(vectors)[has])
                             if folded else None),
            model_versions={**(parent.get("model_versions") or {}),
                            "foldin": f"foldin-{rid}"},
            table_versions={SILVER_INTERACTIONS.name: lake.version(SILVER_INTERACTIONS.name)},
            metrics=dict(parent.get("metrics") or {}),
            extra={"hourly": {"base": base_id, "base_ds": base_ds,
                              "base_silver_version": base.silver_version, "ds": ds,
                              "hour": hour, "cutoff": window.cutoff.isoformat(),
                              "users": len(users), "folded_users": len(folded),
                              "new_events": fresh.num_rows, "window_events": len(event_ids)}},
        )
        write_release(root, rid, data, parent=parent_id)
        report.update(folded_users=len(folded),
                      topn_rows={s: t.num_rows for s, t in lists.items()})
    window_events.unpersist()
    report["published"] = publish_if_live(settings, root, rid, parent_id)
    return report


def publish_if_live(settings: Settings, root: Path, rid: str, parent_id: str) -> bool:
    """Publish ``rid`` unless ``CURRENT`` moved away from its parent meanwhile (a nightly
    release or a rollback won); return whether ``rid`` is live."""
    from serving_export.release.promotion import publish_release

    now = current_release(root)
    if now == rid:
        return True
    if now != parent_id:
        log.warning("CURRENT is %s, not %s (the parent of %s); not publishing it",
                    now, parent_id, rid)
        return False
    publish_release(settings, root, rid)
    return True


def add_arguments(parser: argparse.ArgumentParser, parent: bool) -> None:
    """``--ds`` and ``--hour`` (and ``--parent``) of the hourly release commands."""
    parser.add_argument("--ds", required=True, type=parse_ds, help="logical date YYYY-MM-DD")
    parser.add_argument("--hour", required=True, type=parse_hour,
                        help="logical hour 0-23 (UTC); events before ds HH:00 are used")
    if parent:
        parser.add_argument("--parent", default="",
                            help="the parent release (the DAG passes what `recpipe release "
                                 "parent` chose; empty: choose it the same way)")


def main_hourly(settings: Settings, args: argparse.Namespace) -> int:
    """``recpipe release hourly``: build and publish the hour's release; prints a report."""
    from jobs.spark import get_spark

    root = Path(settings.resolve(settings.serving.releases_root))
    parent = args.parent or choose_parent(root, args.ds, args.hour)
    if parent is None:
        report: dict[str, Any] = {"ds": args.ds, "hour": args.hour,
                                  "skipped": "no published release precedes this hour"}
    else:
        report = run(get_spark(settings), settings, args.ds, args.hour, parent)
    print(json.dumps(report, default=str))
    return 0


def main_parent(settings: Settings, args: argparse.Namespace) -> int:
    """``recpipe release parent``: print the parent of the hour (nothing if none)."""
    root = Path(settings.resolve(settings.serving.releases_root))
    print(choose_parent(root, args.ds, args.hour) or "")
    return 0
