"""``recpipe hourly --ds D --hour HH [--spool DIR]``: an hour's new events into the lake.

The closed files of the event spools (the service's ``events-*.jsonl``, never the
``.jsonl.open`` being written, plus any other event file dropped there) that no earlier
hourly run claimed are claimed for ``(ds, hour)`` in ``ops/hourly_files`` and ingested as one
batch (``recpipe ingest``: bronze, validation, silver). A rerun of the hour ingests the same
claimed files again, which :mod:`jobs.ingest` makes a no-op. The hour's incremental release
is the release layer's (:mod:`serving_export.release.hourly`).

Nothing here reads the clock: the logical time comes from ``--ds`` and ``--hour``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conf import Settings
from conf.errors import SourceError
from jobs.cli_common import add_common_args, parse_ds, parse_hour, settings_from_args
from jobs.lake import Lake
from jobs.sources import FORMATS, batch_id, list_source_files
from jobs.tables import (
    BRONZE_EVENTS,
    HOURLY_FILES,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


log = logging.getLogger(__name__)



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

    Returns:
        A report: ``files``, ``rerun``, the ingest ``batch`` and its counts (or ``skipped``).

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
        summary = ingest.ingest_source(spark, settings, ds, source)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**report, "batch": batch, "source_rows": summary.source_rows,
            "accepted": summary.accepted, "duplicates": summary.duplicates,
            "quarantined": summary.quarantined, "by_reason": summary.by_reason}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recpipe hourly", description=__doc__.split("\n")[0])
    parser.add_argument("--ds", required=True, type=parse_ds, help="logical date YYYY-MM-DD")
    parser.add_argument("--hour", required=True, type=parse_hour,
                        help="logical hour 0-23 (UTC); events before ds HH:00 are used")
    parser.add_argument("--spool", action="append", default=[],
                        help="event spool folder (repeatable; empty or absent: "
                             "serving.spool_dir)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    spools = [s for s in args.spool if s.strip()] or [settings.serving.spool_dir]
    from jobs.spark import get_spark

    report = ingest_step(get_spark(settings), settings, args.ds, args.hour, spools)
    print(json.dumps(report, default=str))
    return 0
