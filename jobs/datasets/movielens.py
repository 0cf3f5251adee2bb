"""MovieLens 100K: fetch it (inside the ``recbole==1.2.1`` wheel) and convert it.

The wheel carries RecBole "atomic files" under ``recbole/dataset_example/ml-100k/``:
tab-separated text whose header names each column with a type (``user_id:token``).

- ``ml-100k.inter``: ``user_id, item_id, rating (1-5), timestamp (epoch seconds)``.
- ``ml-100k.item``: ``item_id, movie_title (year already removed), release_year,
  class (genres, space separated)``. There is no release date and no IMDb URL in this copy.
- ``ml-100k.user``: ``user_id, age, gender, occupation, zip_code``.

Known quirks of the source, handled here: item 267 has title and year ``unkonwn``; item 1412
has ``V`` as its year and the year left in its title; two items carry the genre ``unknown``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conf.errors import DatasetError, InputDataError
from jobs.datasets.formats import (
    ITEMS_SCHEMA,
    RAW_EVENTS_SCHEMA,
    STRING_MAP,
    USERS_SCHEMA,
    UTC_TIMESTAMP,
    events_table,
    write_parquet,
)

logger = logging.getLogger(__name__)

RECBOLE_REQUIREMENT = "recbole==1.2.1"
WHEEL_GLOB = "recbole-1.2.1-*.whl"
WHEEL_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
EXPECTED_COUNTS = {"events": 100_000, "items": 1_682, "users": 943}
"""Published size of MovieLens 100K (GroupLens README)."""

_UNKNOWN = {"", "unknown", "unkonwn"}
_YEAR_IN_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


def fetch_movielens_100k(cache_dir: Path) -> Path:
    """Download the RecBole wheel (once) and extract MovieLens 100K from it.

    Args:
        cache_dir: folder for the wheel and the extracted files.

    Returns:
        ``cache_dir / "ml-100k"``, holding ``ml-100k.inter``, ``.item``, ``.user`` (and the
        wheel's other ml-100k files).

    Raises:
        DatasetError: pip failed, or the wheel does not hold the expected files.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob(WHEEL_GLOB))
    if wheels:
        logger.info("using cached wheel %s", wheels[0])
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", RECBOLE_REQUIREMENT,
               "-d", str(cache_dir)]
        logger.info("running %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(cache_dir.glob(WHEEL_GLOB))
        if done.returncode != 0 or not wheels:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise DatasetError(
                f"pip download {RECBOLE_REQUIREMENT} failed (exit {done.returncode}):\n{tail}"
            )
    return extract_movielens_100k(wheels[0], cache_dir / "ml-100k")


def extract_movielens_100k(wheel: Path, out_dir: Path) -> Path:
    """Extract the ``ml-100k`` files of a RecBole wheel into ``out_dir`` (flat).

    Raises:
        DatasetError: the wheel lacks the ``.inter``, ``.item`` or ``.user`` file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [
            name for name in archive.namelist()
            if name.startswith(WHEEL_MEMBER_DIR) and not name.endswith("/")
        ]
        for name in members:
            target = out_dir / Path(name).name
            target.write_bytes(archive.read(name))
    names = {Path(m).name for m in members}
    missing = {"ml-100k.inter", "ml-100k.item", "ml-100k.user"} - names
    if missing:
        raise DatasetError(f"{wheel} lacks {sorted(missing)} under {WHEEL_MEMBER_DIR}")
    logger.info("extracted %d files to %s", len(members), out_dir)
    return out_dir


def read_atomic(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Read a RecBole atomic file.

    Args:
        path: tab-separated file whose first line is ``name:type<TAB>name:type...``.

    Returns:
        ``(column names without their types, iterator of (line number, fields))``.

    Raises:
        ValueError: (while iterating) a line has the wrong number of fields; the message names
            the file and line.
    """
    fh = path.open("r", encoding="utf-8")
    header = fh.readline().rstrip("\r\n").split("\t")
    names = [field.split(":", 1)[0] for field in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        with fh:
            for lineno, raw in enumerate(fh, start=2):
                line = raw.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split("\t")
                if len(fields) != len(names):
                    raise InputDataError(
                        f"{path}:{lineno}: expected {len(names)} fields {names}, "
                        f"got {len(fields)}"
                    )
                yield lineno, fields

    return names, rows()


def _columns(path: Path, required: list[str]) -> tuple[list[str], list[list[str]]]:
    names, rows = read_atomic(path)
    missing = [r for r in required if r not in names]
    if missing:
        raise InputDataError(f"{path}: missing columns {missing} (found {names})")
    return names, [fields for _, fields in rows]


def ratings_to_events(inter_path: Path, prefix: str = "ml100k") -> pa.Table:
    """Convert ``ml-100k.inter`` to raw ``rating`` events (``<prefix>-<user>-<item>-<epoch>``).

    Raises:
        ValueError: a rating or timestamp is not a number (file and line named).
    """
    names, rows = read_atomic(inter_path)
    col = {name: names.index(name) for name in ("user_id", "item_id", "rating", "timestamp")
           if name in names}
    if len(col) != 4:
        raise InputDataError(
            f"{inter_path}: needs user_id, item_id, rating, timestamp; has {names}")
    users, items, ratings, epochs = [], [], [], []
    for lineno, fields in rows:
        try:
            rating = float(fields[col["rating"]])
            epoch = int(float(fields[col["timestamp"]]))
        except ValueError as exc:
            raise InputDataError(f"{inter_path}:{lineno}: {exc}") from exc
        users.append(fields[col["user_id"]])
        items.append(fields[col["item_id"]])
        ratings.append(rating)
        epochs.append(epoch)
    return events_table(
        event_id=[f"{prefix}-{u}-{i}-{e}" for u, i, e in zip(users, items, epochs, strict=True)],
        user_id=users,
        item_id=items,
        event_type="rating",
        epoch_s=np.array(epochs, dtype=np.int64),
        value=np.array(ratings, dtype=np.float64),
    )


def _string_map(rows: list[dict[str, str]]) -> pa.Array:
    return pa.array([list(r.items()) for r in rows], STRING_MAP)


def clean_item(title: str, year: str, genres: str) -> tuple[str | None, str | None, list[str]]:
    """Tidy one ``ml-100k.item`` row.

    Returns:
        ``(title or None, four-digit year or None, genres)``; a year left in the title
        (``Name (1995)``) is moved out of it, the ``unknown`` genre is dropped.
    """
    title = title.strip()
    year = year.strip()
    match = _YEAR_IN_TITLE.match(title)
    if match:
        title = match["title"]
        if not re.fullmatch(r"\d{4}", year):
            year = match["year"]
    clean_title = None if title.lower() in _UNKNOWN else title
    clean_year = year if re.fullmatch(r"\d{4}", year) else None
    categories = [g for g in genres.split() if g.lower() not in _UNKNOWN]
    return clean_title, clean_year, categories


def items_table(item_path: Path) -> pa.Table:
    """Convert ``ml-100k.item`` to the items format.

    ``created_at`` is 1 January of the release year (the source has no release date), null
    when the year is unknown; ``attributes`` holds ``release_year`` when known.
    """
    names, rows = _columns(item_path, ["item_id", "movie_title", "release_year", "class"])
    at = {name: names.index(name) for name in names}
    ids, titles, categories, attributes, created = [], [], [], [], []
    for fields in rows:
        title, year, genres = clean_item(
            fields[at["movie_title"]], fields[at["release_year"]], fields[at["class"]]
        )
        ids.append(fields[at["item_id"]])
        titles.append(title)
        categories.append(genres)
        attributes.append({"release_year": year} if year else {})
        created.append(datetime(int(year), 1, 1, tzinfo=UTC) if year else None)
    n = len(ids)
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(titles, pa.string()),
            pa.array(categories, pa.list_(pa.string())),
            _string_map(attributes),
            pa.array(np.ones(n, dtype=bool)),
            pa.array(created, UTC_TIMESTAMP),
            pa.array(np.ones(n, dtype=np.float64)),
        ],
        schema=ITEMS_SCHEMA,
    )


def users_table(user_path: Path, events: pa.Table) -> pa.Table:
    """Convert ``ml-100k.user`` to the users format.

    Every column but ``user_id`` goes into ``attributes`` (age, gender, occupation,
    zip_code). ``created_at`` is the user's first event time in ``events`` (null if none).
    """
    names, rows = _columns(user_path, ["user_id"])
    first: dict[str, str] = {}
    for user, ts in zip(
        events.column("user_id").to_pylist(), events.column("ts").to_pylist(), strict=True
    ):
        if user not in first or ts < first[user]:  # ISO-8601 Z strings sort as times
            first[user] = ts
    key = names.index("user_id")
    ids = [fields[key] for fields in rows]
    attributes = [
        {n: f for n, f in zip(names, fields, strict=True) if n != "user_id" and f}
        for fields in rows
    ]
    created = [
        datetime.strptime(first[u], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if u in first else None
        for u in ids
    ]
    return pa.Table.from_arrays(
        [pa.array(ids, pa.string()), _string_map(attributes), pa.array(created, UTC_TIMESTAMP)],
        schema=USERS_SCHEMA,
    )


def _data_lines(path: Path) -> int:
    with path.open("r", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip()) - 1  # minus the header


def verify_counts(events: pa.Table, items: pa.Table, users: pa.Table, src_dir: Path) -> None:
    """Check row counts against the source files and the ids against each other.

    Raises:
        DatasetError: a count differs from the source's line count, an id repeats, or an event
            names an unknown user or item.
    """
    for name, table, key in (("inter", events, "event_id"), ("item", items, "item_id"),
                             ("user", users, "user_id")):
        expected = _data_lines(src_dir / f"ml-100k.{name}")
        if table.num_rows != expected:
            raise DatasetError(f"ml-100k.{name}: {expected} lines but {table.num_rows} rows")
        if pc.count_distinct(table.column(key)).as_py() != table.num_rows:
            raise DatasetError(f"ml-100k.{name}: {key} is not unique")
    for key, table in (("user_id", users), ("item_id", items)):
        unknown = set(events.column(key).to_pylist()) - set(table.column(key).to_pylist())
        if unknown:
            raise DatasetError(f"events name {len(unknown)} unknown {key}s, e.g. {min(unknown)}")


def convert_movielens_100k(src_dir: Path, out_dir: Path) -> dict[str, int]:
    """Convert the RecBole ML-100K files to ``events``, ``items`` and ``users`` Parquet.

    Args:
        src_dir: folder with ``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``.
        out_dir: where ``events.parquet``, ``items.parquet``, ``users.parquet`` are written.

    Returns:
        Row counts ``{"events": ..., "items": ..., "users": ...}``.

    Raises:
        ValueError: a source line is malformed (file and line named).
        DatasetError: the converted counts or ids disagree with the source.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    events = ratings_to_events(src_dir / "ml-100k.inter")
    items = items_table(src_dir / "ml-100k.item")
    users = users_table(src_dir / "ml-100k.user", events)
    verify_counts(events, items, users, src_dir)
    write_parquet(events, out_dir / "events.parquet", RAW_EVENTS_SCHEMA)
    write_parquet(items, out_dir / "items.parquet", ITEMS_SCHEMA)
    write_parquet(users, out_dir / "users.parquet", USERS_SCHEMA)
    return {"events": events.num_rows, "items": items.num_rows, "users": users.num_rows}
