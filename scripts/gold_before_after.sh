#!/usr/bin/env bash
# The nightly on MovieLens 100K for two dates with the code at BEFORE and at AFTER (default
# HEAD), each from its own checkout (git worktree) into its own throwaway lake, then every
# gold table compared row by row (scripts/compare_gold.py). Shows that a change of structure
# changed no output. The ranker's training reads its examples in the order of the lake's file
# names (random per write), so two lakes train two different rankers from the same rows; the
# comparison is therefore made twice: as run, and again after AFTER has recomputed the last
# date's top-N and evaluation with BEFORE's ranker export (the same model on both sides).
#   bash scripts/gold_before_after.sh BEFORE [AFTER] [OUT_DIR]
# Torch and BLAS run on one thread so that the ranker trains the same way twice.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BEFORE=${1:?usage: gold_before_after.sh BEFORE [AFTER] [OUT_DIR]}
AFTER=${2:-HEAD}
OUT=${3:-$(mktemp -d -t recpipe-gold-XXXX)}
BIN=$ROOT/.venv/bin
mkdir -p "$OUT"
git worktree add --detach "$OUT/before-src" "$BEFORE" >/dev/null
git worktree add --detach "$OUT/after-src" "$AFTER" >/dev/null
trap 'git worktree remove --force "$OUT/before-src" >/dev/null 2>&1 || true;
      git worktree remove --force "$OUT/after-src" >/dev/null 2>&1 || true' EXIT

recpipe_in() {  # recpipe_in SRC NAME ARGS...: recpipe with the code of SRC on lake NAME
  local src=$1 tmp=$OUT/$2
  shift 2
  (cd "$src" && env PYTHONPATH="$src" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 SPARK_LOCAL_IP=127.0.0.1 \
    RECPIPE_LAKE_ROOT="$tmp/lake" RECPIPE_MATRIX__HOLDOUT_DAYS=14 \
    RECPIPE_RANKER__LABEL_DAYS=14 RECPIPE_RUNS_DIR="$tmp/runs" \
    RECPIPE_WORK_DIR="$tmp/work" RECPIPE_SERVING__RELEASES_ROOT="$tmp/releases" \
    RECPIPE_SERVING__SPOOL_DIR="$tmp/spool" RECPIPE_DATA_DIR="$ROOT/var/data" \
    RECPIPE_MLFLOW__TRACKING_URI="sqlite:///$tmp/mlflow.db" \
    RECPIPE_MLFLOW__ARTIFACT_ROOT="$tmp/mlflow-artifacts" \
    "$BIN/python" -m recpipe "$@")
}

run_tree() {  # run_tree SRC NAME: both nights with the code of SRC into $OUT/NAME
  local src=$1 name=$2
  mkdir -p "$OUT/$name"
  for ds in 1998-04-08 1998-04-22; do
    recpipe_in "$src" "$name" run nightly --date "$ds" --dataset movielens-100k \
      --landing "$OUT/$name/landing" >"$OUT/$name/nightly-$ds.log" 2>&1 || {
      echo "$name: the nightly of $ds ended with $? (a gate rejection ends with 1)";
      tail -3 "$OUT/$name/nightly-$ds.log"; }
  done
}
echo "== before: $BEFORE"
run_tree "$OUT/before-src" before
echo "== after: $AFTER"
run_tree "$OUT/after-src" after
echo "== as run"
"$BIN/python" scripts/compare_gold.py "$OUT/before/lake" "$OUT/after/lake" || true
echo "== after's top-N and evaluation of 1998-04-22 again, with before's ranker"
rm -rf "$OUT/after/models/ranker/1998-04-22"
cp -r "$OUT/before/models/ranker/1998-04-22" "$OUT/after/models/ranker/1998-04-22"
for step in topn evaluate gate; do  # the gate ends with 1 when it rejects
  recpipe_in "$OUT/after-src" after "$step" --ds 1998-04-22 >"$OUT/after/$step-again.log" \
    2>&1 || true
done
"$BIN/python" scripts/compare_gold.py "$OUT/before/lake" "$OUT/after/lake"
