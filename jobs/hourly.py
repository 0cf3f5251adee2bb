"""``recpipe hourly --ds D --hour HH [--spool DIR]``: fresh recommendations every hour.

Two steps, each a task of the ``recpipe_hourly`` DAG (``--step``; default both):

1. ``ingest``: the closed files of the event spools (the service's ``events-*.jsonl``, never
   the ``.jsonl.open`` being written, plus any other event file dropped there) that no
   earlier hourly run claimed are claimed for ``(ds, hour)`` in ``ops/hourly_files`` and
   ingested as one batch (``recpipe ingest``: bronze, validation, silver). A rerun of the
   hour ingests the same claimed files again, which :mod:`jobs.ingest` makes a no-op.
2. ``release``: on the live release (``CURRENT``), for every user with an event before the
   run's logical time ``ds HH:00`` that reached silver after the nightly base release was
   built (see :mod:`jobs.foldin`): fold their interactions of the look-back window (confidences of
   :func:`jobs.training_matrix.transform`) into user vectors with the release's item
   vectors fixed, build their candidates (:mod:`jobs.candidates`; the items of their new
   events are excluded), score them (:func:`jobs.topn.score_candidates`, the base date's
   ranker) and apply the surfaces' rules (:func:`jobs.topn.transform`); then write an
   incremental release (``parent=CURRENT``: items, similar items, popular lists and FAISS
   shards are hard links, only the user side is rewritten) that inherits the parent's gate
   verdict, and publish it if ``CURRENT`` has not moved meanwhile.

Nothing here reads the clock: the logical time comes from ``--ds`` and ``--hour``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from algorithms.window import dates_between
from conf import Settings
from conf.errors import FoldInError, SourceError
from jobs.cli_common import add_common_args, parse_ds, settings_from_args
from jobs.foldin import (
    backfill_lists,
    changed_users,
    fold_vectors,
    foldin_matrix,
    hour_window,
    merge_purchased,
    new_events,
    recent_items,
    release_id,
)
from jobs.lake import Lake
from jobs.sources import FORMATS, batch_id, list_source_files
from jobs.tables import (
    BRONZE_EVENTS,
    HOURLY_FILES,
    ITEM_EMBEDDINGS,
    SILVER_INTERACTIONS,
    SILVER_ITEMS,
    SILVER_USERS,
    spec_for,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from serving_export.release import Release

log = logging.getLogger(__name__)

"""Which event file each hourly run claimed (file name, size, ingest batch, ds, hour)."""
STEPS = ("ingest", "release")
EVENT_COLUMNS = ["event_id", "user_id", "item_id", "event_type", "value", "ts"]
USERS_PER_PARTITION = 2000


# -- step 1: ingest the spools ----------------------------------------------------------------
def spool_files(spools: list[str | Path]) -> list[Path]:
    """The closed event files of the spool folders (sorted by name within each folder).

    A missing or empty folder contributes nothing; ``.open`` files, hidden files and names
    starting with ``_`` are never listed (:func:`jobs.sources.list_source_files`).

    Raises:
        SourceError: a file is unreadable, or two folders hold files of the same name.
    """
    files: list[Path] = []
    for spool in spools:
        path = Path(spool)
        if not path.exists():
            log.warning("spool %s does not exist; nothing to ingest from it", path)
            continue
        if path.is_dir() and not any(
                p.is_file() and p.suffix.lower() in FORMATS
                and not p.name.startswith((".", "_")) for p in path.rglob("*")):
            continue
        files += list_source_files(path)
    seen: dict[str, Path] = {}
    for p in files:
        if p.name in seen and seen[p.name] != p:
            raise SourceError(f"two event files are named {p.name!r}: {seen[p.name]} and {p}")
        seen[p.name] = p
    return list(seen.values())


def claim(ledger: pa.Table, files: list[Path], ds: str, hour: int
          ) -> tuple[list[Path], list[str], bool]:
    """The files the run ``(ds, hour)`` ingests.

    Args:
        ledger: rows of ``ops/hourly_files`` (every run's claims).
        files: the closed files now in the spools.
        ds, hour: the run.

    Returns:
        ``(files, missing, rerun)``: the files to ingest; for a rerun (the hour already
        claimed files) the claimed files still present and the names of those gone; for a
        first run every file no run claimed, and no missing names.
    """
    mine = ledger.filter(pc.and_(pc.equal(ledger.column("ds"), ds),
                                 pc.equal(ledger.column("hour"), hour)))
    if mine.num_rows:
        names = set(mine.column("file").to_pylist())
        present = [p for p in files if p.name in names]
        return present, sorted(names - {p.name for p in present}), True
    taken = set(ledger.column("file").to_pylist())
    return [p for p in files if p.name not in taken], [], False


def _stage(files: list[Path], folder: Path) -> Path:
    """Symlink ``files`` into ``folder`` (same names, so the ingest batch id is the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in files:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def ingest_step(spark: SparkSession, settings: Settings, ds: str, hour: int,
                spools: list[str | Path]) -> dict[str, Any]:
    """Claim and ingest the new spool files for ``(ds, hour)``; see the module docstring.

    Raises:
        SourceError: files this hour claimed are gone and their batch never reached bronze.
    """
    from jobs import ingest

    lake = Lake(settings)
    ledger = lake.read_arrow(HOURLY_FILES.name)
    files, missing, rerun = claim(ledger, spool_files(spools), ds, hour)
    report: dict[str, Any] = {"files": len(files), "rerun": rerun}
    if missing:
        batch = ledger.filter(pc.equal(ledger.column("file"), missing[0]))["batch"][0].as_py()
        if lake.exists(BRONZE_EVENTS.name) and lake.table(BRONZE_EVENTS.name) \
                .transaction_version(f"recpipe:{batch}") is not None:
            log.warning("%d claimed file(s) are gone (e.g. %s); their batch %s is in bronze",
                        len(missing), missing[0], batch)
            return {**report, "skipped": "claimed files gone, batch already ingested"}
        raise SourceError(f"{len(missing)} file(s) claimed by ds={ds} hour={hour} are gone "
                          f"and were never ingested, e.g. {missing[0]}")
    if not files:
        log.info("no new event files in %s", [str(s) for s in spools])
        return report
    staging = Path(tempfile.mkdtemp(prefix="recpipe-hourly-"))
    try:
        source = _stage(files, staging / "events")
        batch = batch_id(list_source_files(source), ds)
        if not rerun:
            rows = pa.table({
                "file": [p.name for p in files], "bytes": [p.stat().st_size for p in files],
                "batch": [batch] * len(files), "hour": [hour] * len(files),
                "ds": [ds] * len(files)}, schema=HOURLY_FILES.schema)
            same_day = ledger.filter(pc.equal(ledger.column("ds"), ds))
            lake.overwrite_partitions(HOURLY_FILES.name, pa.concat_tables(
                [same_day.select(rows.column_names).cast(HOURLY_FILES.schema), rows]), [ds])
        summary = ingest.run(spark, settings, ds, source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**report, "batch": batch, "source_rows": summary.source_rows,
            "accepted": summary.accepted, "duplicates": summary.duplicates,
            "quarantined": summary.quarantined, "by_reason": summary.by_reason}


# -- step 2: fold in, recompute, release ------------------------------------------------------
@dataclass(frozen=True)
class LiveBase:
    """The live release and the nightly release it builds on (itself when it is nightly).

    Attributes:
        parent_id, parent: the live release's id and manifest.
        base_id, base_ds: the nightly base release and its date.
        silver_version: the ``silver/interactions`` version the base was built from.
    """

    parent_id: str
    parent: dict[str, Any]
    base_id: str
    base_ds: str
    silver_version: int


def live_base(root: Path) -> LiveBase | None:
    """The :class:`LiveBase` of ``CURRENT`` under ``root``, or None if nothing is published.

    Raises:
        FoldInError: the base does not record the ``silver/interactions`` version it read.
    """
    from serving_export.publish import current_release
    from serving_export.release_format import read_manifest

    current = current_release(root)
    if current is None:
        return None
    manifest = read_manifest(root / current)
    hourly = (manifest.get("extra") or {}).get("hourly")
    if hourly:
        return LiveBase(current, manifest, hourly["base"], hourly["base_ds"],
                        int(hourly["base_silver_version"]))
    version = (manifest.get("table_versions") or {}).get(SILVER_INTERACTIONS.name)
    if version is None:
        raise FoldInError(f"release {current} does not record the {SILVER_INTERACTIONS.name} "
                          f"version it was built from; cannot tell which events are new")
    return LiveBase(current, manifest, current, manifest["ds"], int(version))


def changed_partitions(lake: Lake, name: str, version: int) -> list[str]:
    """Partition values of table ``name`` whose files differ between ``version`` and now."""
    column = f"partition.{spec_for(name).partition_by[0]}"

    def files(v: int | None) -> dict[str, str]:
        actions = pa.table(lake.table(name, v).get_add_actions(flatten=True))
        return dict(zip(actions.column("path").to_pylist(),
                        actions.column(column).to_pylist(), strict=True))

    before, now = files(version), files(None)
    return sorted({p for f, p in now.items() if f not in before}
                  | {p for f, p in before.items() if f not in now})


def silver_since(lake: Lake, version: int, cutoff: datetime) -> pa.Table:
    """Silver events before ``cutoff`` that were not in ``silver/interactions`` at
    ``version`` (:func:`jobs.foldin.new_events` over the partitions changed since)."""
    name = SILVER_INTERACTIONS.name
    dates = changed_partitions(lake, name, version)
    if not dates:
        return SILVER_INTERACTIONS.schema.empty_table().select(EVENT_COLUMNS)
    before = lake.read_arrow(name, dates, ["event_id"], version=version).column("event_id")
    return new_events(lake.read_arrow(name, dates, EVENT_COLUMNS), before, cutoff)


def settings_key(settings: Settings) -> dict[str, Any]:
    """The settings that shape an hourly release (part of its id)."""
    return {"matrix": settings.matrix.model_dump(), "als": settings.als.model_dump(),
            "candidates": settings.candidates.model_dump(), "seed": settings.seed,
            "surfaces": {k: v.model_dump() for k, v in sorted(settings.surfaces.items())}}


def _decode(ids: np.ndarray) -> list[str]:
    return [x.decode("utf-8") for x in ids.tolist()]


def candidate_users(spark: SparkSession, window_events: DataFrame, users: pa.Table,
                    settings: Settings) -> DataFrame:
    """``user_id, vector, history, excluded, segment`` rows for :func:`jobs.candidates.
    transform`: history and exclusions from the window's events, plus the items of the new
    events (``users.recent``) excluded."""
    from pyspark.sql import functions as F

    from jobs.candidates import user_rows

    history = user_rows(window_events, settings.candidates)
    empty = F.array().cast("array<string>")
    return (spark.createDataFrame(users).join(history, "user_id", "left")
            .select("user_id", "vector", "segment", F.coalesce("history", empty)
                    .alias("history"),
                    F.array_union(F.coalesce("excluded", empty), F.coalesce("recent", empty))
                    .alias("excluded"))
            .repartition(max(1, settings.spark.shuffle_partitions), "user_id"))


def user_segments(lake: Lake, settings: Settings, ds: str, user_ids: list[str]
                  ) -> dict[str, str]:
    """Segment keys of the users known to ``silver/users`` as of ``ds``."""
    from algorithms.segments import segment_of
    from jobs.asof import latest_partition_at_or_before

    snapshot = latest_partition_at_or_before(lake, SILVER_USERS.name, ds)
    if snapshot is None:
        return {}
    rows = lake.read_arrow(SILVER_USERS.name, [snapshot], ["user_id", "attributes"])
    wanted = set(user_ids)
    rules = settings.popularity.segments
    return {r["user_id"]: segment_of(dict(r["attributes"] or []), rules)
            for r in rows.to_pylist() if r["user_id"] in wanted}


def check_item_side(lake: Lake, rel: Release, base_ds: str) -> None:
    """Refuse a release without item vectors, or whose model is not the gold one of
    ``base_ds`` (candidates read the gold tables of ``base_ds``).

    Raises:
        FoldInError: as above.
    """
    if rel.item_vectors is None:
        raise FoldInError(f"release {rel.id} has no item vectors to fold users into")
    gold = set(lake.read_arrow(ITEM_EMBEDDINGS.name, [base_ds], ["model_version"])
               .column("model_version").to_pylist())
    served = (rel.manifest.get("model_versions") or {}).get("embeddings")
    if served and gold != {served}:
        raise FoldInError(f"gold/item_embeddings ds={base_ds} holds {sorted(gold)} but "
                          f"release {rel.id} serves {served}")


def fold_users(rel: Release, matrix: pa.Table, users: list[str], settings: Settings
               ) -> tuple[np.ndarray, np.ndarray, list[list[float] | None]]:
    """Fold the users' matrix rows into vectors with the release's item vectors fixed.

    Returns:
        ``(vectors (B, F), has (B,), retrieval)``: ``retrieval`` is the vector each user is
        retrieved with: the folded one, else (no usable pair) the parent's, else None.
    """
    item_ids = _decode(rel.item_ids)
    has_vec = np.asarray(rel.item_has_vector)
    item_row = {item: i for i, item in enumerate(item_ids) if has_vec[i]}
    vectors, has = fold_vectors(np.asarray(rel.item_vectors),
                                foldin_matrix(matrix, users, item_row, len(item_ids)),
                                settings.als)
    retrieval: list[list[float] | None] = []
    for i, user in enumerate(users):
        row = rel.user_row(user)
        if has[i]:
            retrieval.append(vectors[i].tolist())
        elif row >= 0 and rel.user_has_vector is not None and rel.user_has_vector[row]:
            retrieval.append(np.asarray(rel.user_vectors[row]).tolist())
        else:
            retrieval.append(None)
    return vectors, has, retrieval


def refreshed_lists(spark: SparkSession, settings: Settings, lake: Lake, rel: Release,
                    base_ds: str, ds: str, users_df: DataFrame, users: list[str]
                    ) -> dict[str, pa.Table]:
    """Every surface's new lists for ``users``: candidates from the retrieval context of
    ``base_ds``, scored by :func:`jobs.topn.score_candidates` (the ranker of ``base_ds``),
    ordered by :func:`jobs.topn.transform`; a user left without a list keeps the parent's
    minus the items excluded for them (:func:`jobs.foldin.backfill_lists`)."""
    from jobs import topn as topn_job
    from jobs.asof import latest_partition_at_or_before
    from jobs.candidates import build_context
    from jobs.candidates import transform as candidates_transform

    users_df = users_df.cache()
    ctx = build_context(lake, base_ds, settings)
    cands = candidates_transform(users_df, spark.sparkContext.broadcast(ctx),
                                 settings.candidates, ds)
    scored = topn_job.score_candidates(spark, cands, settings, base_ds)
    items_ds = latest_partition_at_or_before(lake, SILVER_ITEMS.name, base_ds)
    items = lake.read_arrow(SILVER_ITEMS.name, [items_ds] if items_ds else [],
                            ["item_id", "available", "boost", "categories"])
    # About USERS_PER_PARTITION users a partition: topn.transform's body cannot take a
    # partition without rows, which hashing a handful of users would leave.
    parts = max(1, min(settings.spark.shuffle_partitions, len(users) // USERS_PER_PARTITION))
    top = topn_job.transform(scored, spark.sparkContext.broadcast(topn_job.item_meta(items)),
                             dict(settings.surfaces), settings.seed, ds, parts).toArrow()
    blocked = {r["user_id"]: set(r["excluded"] or ())
               for r in users_df.select("user_id", "excluded").toArrow().to_pylist()}
    users_df.unpersist()
    columns = ["user_id", "item_id", "score", "rank", "sources"]
    empty = pa.schema([top.schema.field(c) for c in columns]).empty_table()
    out = {}
    for surface in sorted({*rel.surfaces, *top.column("surface").to_pylist()}):
        mine = top.filter(pc.equal(top.column("surface"), surface)).select(columns) \
            if top.num_rows else empty
        previous = {}
        if surface in rel.surfaces:
            for user in users:
                items_, scores, masks = rel.topn(surface, rel.user_row(user))
                previous[user] = [(rel.item_id(int(i)), float(sc), rel.sources_names(int(m)))
                                  for i, sc, m in zip(items_, scores, masks, strict=True)]
        out[surface] = backfill_lists(mine, users, previous, blocked)
    return out


def release_step(spark: SparkSession, settings: Settings, ds: str, hour: int
                 ) -> dict[str, Any]:
    """Fold in, recompute and release for ``(ds, hour)``; see the module docstring.

    Returns:
        A report: ``release_id``, ``parent``, ``users``, ``new_events``, ``published`` (or
        ``skipped`` with the reason when there is nothing to do).

    Raises:
        FoldInError: the live release has no item vectors, or the base date's gold item
            vectors are not the ones the live release serves.
        ReleaseError: writing or publishing failed.
    """
    from pyspark.sql import functions as F

    from jobs.training_matrix import transform as matrix_transform
    from serving_export.release import (
        Embeddings,
        GateVerdict,
        ReleaseData,
        load_release,
        write_release,
    )

    lake = Lake(settings)
    root = Path(settings.resolve(settings.serving.releases_root))
    live = live_base(root)
    if live is None:
        return {"skipped": "no release is published yet"}
    parent_id, parent, base_id, base_ds = live.parent_id, live.parent, live.base_id, \
        live.base_ds
    window = hour_window(ds, hour, settings.matrix.lookback_days)
    report: dict[str, Any] = {"ds": ds, "hour": hour, "parent": parent_id, "base": base_id,
                              "cutoff": window.cutoff.isoformat()}
    live_hourly = (parent.get("extra") or {}).get("hourly") or {}
    if live_hourly.get("cutoff", "") > window.cutoff.isoformat():
        return {**report, "skipped": f"a later hour ({live_hourly['cutoff']}) is live"}
    if (parent.get("gate") or {}).get("passed") is not True:
        return {**report, "skipped": f"the live release {parent_id} did not pass the gate"}

    fresh = silver_since(lake, live.silver_version, window.cutoff)
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
        segments = user_segments(lake, settings, ds, users)
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
        purchased = merge_purchased(previous, fresh)
        folded = [u for u, ok in zip(users, has, strict=True) if ok]
        data = ReleaseData(
            ds=ds,
            gate=GateVerdict(parent["gate"]["passed"] is True,
                             tuple(parent["gate"].get("reasons") or ())),
            topn=lists,
            users=pa.table({"user_id": pa.array(users, pa.string()),
                            "segment": pa.array([segments.get(u) for u in users], pa.string()),
                            "purchased": pa.array([purchased.get(u, []) for u in users],
                                                  pa.list_(pa.string()))}),
            user_embeddings=Embeddings(ids=folded, vectors=vectors[has]) if folded else None,
            model_versions={**(parent.get("model_versions") or {}),
                            "foldin": f"foldin-{rid}"},
            table_versions={SILVER_INTERACTIONS.name: lake.version(SILVER_INTERACTIONS.name)},
            metrics=dict(parent.get("metrics") or {}),
            extra={"hourly": {"base": base_id, "base_ds": base_ds,
                              "base_silver_version": live.silver_version, "ds": ds,
                              "hour": hour, "cutoff": window.cutoff.isoformat(),
                              "users": len(users), "folded_users": len(folded),
                              "new_events": fresh.num_rows, "window_events": len(event_ids)}},
        )
        write_release(root, rid, data, parent=parent_id)
        report.update(folded_users=len(folded),
                      topn_rows={s: t.num_rows for s, t in lists.items()})
    window_events.unpersist()
    report["published"] = publish_if_live(root, rid, parent_id)
    return report


def publish_if_live(root: Path, rid: str, parent_id: str) -> bool:
    """Publish ``rid`` unless ``CURRENT`` moved away from its parent meanwhile (a nightly
    release or a rollback won); return whether ``rid`` is live."""
    from serving_export.publish import current_release, publish

    now = current_release(root)
    if now == rid:
        return True
    if now != parent_id:
        log.warning("CURRENT moved from %s to %s while %s was built; not publishing it",
                    parent_id, now, rid)
        return False
    publish(root, rid)
    return True


def run(spark: SparkSession, settings: Settings, ds: str, hour: int,
        spools: list[str | Path], steps: tuple[str, ...] = STEPS) -> dict[str, Any]:
    """Run the hourly ``steps`` for ``(ds, hour)``; return their reports by step."""
    out: dict[str, Any] = {"ds": ds, "hour": hour}
    if "ingest" in steps:
        out["ingest"] = ingest_step(spark, settings, ds, hour, spools)
    if "release" in steps:
        out["release"] = release_step(spark, settings, ds, hour)
    return out


def _hour(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an hour 0-23: {text!r}") from None
    if not 0 <= value <= 23:
        raise argparse.ArgumentTypeError(f"not an hour 0-23: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe hourly", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds, help="logical date YYYY-MM-DD")
    parser.add_argument("--hour", required=True, type=_hour,
                        help="logical hour 0-23 (UTC); events before ds HH:00 are used")
    parser.add_argument("--spool", action="append", default=[],
                        help="event spool folder (repeatable; empty or absent: "
                             "serving.spool_dir)")
    parser.add_argument("--step", choices=(*STEPS, "all"), default="all",
                        help="run one step only (the DAG's tasks)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    spools = [s for s in args.spool if s.strip()] or [settings.serving.spool_dir]
    steps = STEPS if args.step == "all" else (args.step,)
    from jobs.spark import get_spark

    report = run(get_spark(settings), settings, args.ds, args.hour, spools, steps)
    print(json.dumps(report, default=str))
    return 0
