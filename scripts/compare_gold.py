"""Compare the gold tables of two lakes row by row: ``python scripts/compare_gold.py A B``.

For every table under ``gold/`` of lake A (and B), both sides are read whole, sorted by all
their columns, and compared: row counts, then every row. Floats must be equal to the last
bit unless ``--rel-tol`` allows more. Tables only one lake has are reported. Exit 0 when
every table holds the same rows, 1 otherwise. Used to show that a refactoring changed no
output (``scripts/gold_before_after.sh``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

SKIP_COLUMNS = {"run_id", "details"}
"""Columns of ``gold/evaluation`` that name a run (its MLflow run id, the gate's verdict as
JSON with version numbers); every other column is compared."""


def tables(lake: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(lake)) for p in lake.glob("gold/*/_delta_log"))


def rows(lake: Path, name: str) -> list[tuple]:
    table = DeltaTable(str(lake / name)).to_pyarrow_table()
    keep = [c for c in table.column_names if c not in SKIP_COLUMNS]
    table = table.select(keep)
    out = []
    for row in table.to_pylist():
        out.append(tuple((k, _hashable(row[k])) for k in keep))
    return sorted(out, key=repr)


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def same(a, b, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or (rel_tol > 0 and math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    return a == b


def compare(a: Path, b: Path, rel_tol: float) -> int:
    names_a, names_b = set(tables(a)), set(tables(b))
    failures = 0
    for name in sorted(names_a | names_b):
        if name not in names_a or name not in names_b:
            print(f"{name:28s} only in {'A' if name in names_a else 'B'}")
            failures += 1
            continue
        ra, rb = rows(a, name), rows(b, name)
        if len(ra) != len(rb):
            print(f"{name:28s} DIFFERENT: {len(ra)} rows vs {len(rb)}")
            failures += 1
            continue
        diff = sum(not same(x, y, rel_tol) for x, y in zip(ra, rb, strict=True))
        state = "identical" if diff == 0 else f"DIFFERENT in {diff} rows"
        print(f"{name:28s} {len(ra):>9,} rows  {state}")
        failures += diff > 0
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lake_a", type=Path)
    parser.add_argument("lake_b", type=Path)
    parser.add_argument("--rel-tol", type=float, default=0.0,
                        help="relative tolerance for floats (default 0: bit for bit)")
    args = parser.parse_args(argv)
    for lake in (args.lake_a, args.lake_b):
        if not (lake / "gold").is_dir():
            print(f"{lake}: no gold/ folder", file=sys.stderr)
            return 2
    print(f"A: {args.lake_a}\nB: {args.lake_b}")
    return compare(args.lake_a, args.lake_b, args.rel_tol)


if __name__ == "__main__":
    pa.set_cpu_count(1)
    sys.exit(main(sys.argv[1:]))
