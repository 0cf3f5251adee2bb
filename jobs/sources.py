"""Read raw event sources (CSV, JSON lines, Parquet; a file or a folder of them) into Spark.

Every column is read as a string, exactly as received; rows the reader cannot split into
fields keep their text in ``_corrupt_record`` so validation can quarantine them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conf.errors import SourceError
from jobs.tables import RAW_EVENT_COLUMNS

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json",
           ".parquet": "parquet", ".pq": "parquet"}
REQUIRED = ("event_id", "user_id", "item_id", "event_type", "ts")
CORRUPT = "_corrupt_record"


def list_source_files(source: str | Path) -> list[Path]:
    """The files of ``source`` (a file, or every supported file under a folder, sorted).

    Raises:
        SourceError: the path does not exist, is unreadable, or holds no supported file.
    """
    path = Path(source)
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [p for p in files if not p.name.startswith((".", "_"))]
    unsupported = [p.name for p in files if p.suffix.lower() not in FORMATS]
    if path.is_file() and unsupported:
        raise SourceError(f"unsupported source format {path.suffix!r} for {path}; "
                          f"expected one of {sorted(FORMATS)}")
    files = [p for p in files if p.suffix.lower() in FORMATS]
    if not files:
        raise SourceError(f"no event files (.csv, .jsonl, .parquet) under {path}")
    for p in files:
        try:
            with p.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise SourceError(f"cannot read source file {p}: {exc}") from exc
    return files


def batch_id(files: list[Path], ds: str) -> str:
    """A content hash of the source files and the date: the same input gives the same id."""
    digest = hashlib.sha256(ds.encode())
    for p in files:
        digest.update(p.name.encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:32]


def _raw_schema(with_corrupt: bool) -> T.StructType:
    fields = [T.StructField(c, T.StringType()) for c in RAW_EVENT_COLUMNS]
    if with_corrupt:
        fields.append(T.StructField(CORRUPT, T.StringType()))
    return T.StructType(fields)


def _read_one(spark: SparkSession, path: Path) -> DataFrame:
    fmt = FORMATS[path.suffix.lower()]
    uri = str(path.resolve())
    if fmt == "parquet":
        df = spark.read.parquet(uri)
        cols = set(df.columns)
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise SourceError(f"{path}: missing required column(s) {missing}")
        df = df.select(*[
            (F.col(c).cast("string") if c in cols else F.lit(None).cast("string")).alias(c)
            for c in RAW_EVENT_COLUMNS
        ]).withColumn(CORRUPT, F.lit(None).cast("string"))
    elif fmt == "csv":
        header = spark.read.text(uri).limit(1).collect()
        names = header[0][0].strip().split(",") if header else []
        missing = [c for c in REQUIRED if c not in [n.strip().strip('"') for n in names]]
        if missing:
            raise SourceError(f"{path}: CSV header lacks required column(s) {missing}")
        if [n.strip().strip('"') for n in names] != list(RAW_EVENT_COLUMNS):
            raise SourceError(f"{path}: CSV header must be {','.join(RAW_EVENT_COLUMNS)}; "
                              f"got {','.join(names)}")
        df = (spark.read.schema(_raw_schema(True)).option("header", True)
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
              .option("enforceSchema", False).csv(uri))
    else:
        df = (spark.read.schema(_raw_schema(True)).option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", CORRUPT)
              .option("primitivesAsString", True).json(uri))
    # A JSON number or bool arrives as its text; keep strings as received.
    return (df.withColumn("_source", F.lit(path.name))
              .withColumn("_row", F.monotonically_increasing_id()))


def read_raw_events(spark: SparkSession, files: list[Path]) -> DataFrame:
    """All files as one DataFrame of string columns plus ``_corrupt_record``, ``_source``,
    ``_row`` (a row id unique within the file)."""
    frames = [_read_one(spark, p) for p in files]
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out
