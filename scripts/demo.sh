#!/usr/bin/env bash
# `make demo`: MovieLens 100K through the nightly Airflow DAG on the embedded default
# (local Spark, Delta lake on disk, Airflow with SQLite, MLflow with SQLite), for two dates:
# the first night has no earlier candidates to train the ranker on; the second trains it on
# the first night's candidates. Then: every table, a few users' lists, and the lookup
# service answering requests on a loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export RECPIPE_LAKE_ROOT=${RECPIPE_LAKE_ROOT:-$ROOT/var/lake}
export RECPIPE_LANDING=${RECPIPE_LANDING:-$ROOT/var/landing/movielens-100k}
export RECPIPE_MATRIX__HOLDOUT_DAYS=${RECPIPE_MATRIX__HOLDOUT_DAYS:-14}
export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/var/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export SPARK_LOCAL_IP=127.0.0.1
DATES=${DATES:-"1998-04-08 1998-04-22"}
BIN=$ROOT/.venv/bin
mkdir -p "$AIRFLOW_HOME" "$ROOT/var"

t0=$(date +%s)
echo "== Airflow metadata database ($AIRFLOW_HOME)"
"$BIN/airflow" db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || {
  tail -20 "$AIRFLOW_HOME/migrate.log"; exit 1; }
"$BIN/airflow" pools set spark 1 "Spark-heavy tasks, one at a time on one machine" >/dev/null

conf=$(printf '{"dataset": "movielens-100k", "landing": "%s"}' "$RECPIPE_LANDING")
for ds in $DATES; do
  echo "== recpipe_nightly for ds=$ds on MovieLens 100K (airflow dags test)"
  log=$ROOT/var/demo-dag-$ds.log
  t1=$(date +%s)
  "$BIN/airflow" dags test recpipe_nightly "$ds" -c "$conf" >"$log" 2>&1 || true
  code=0; "$BIN/python" -m recpipe.dagrun recpipe_nightly "$log" || code=$?
  echo "   ($(( $(date +%s) - t1 )) s; log: $log)"
  if [[ $code -eq 3 ]]; then
    "$BIN/python" - "$ds" <<'PY'
import sys
from conf import load_settings
from evaluation.gate import load_verdict
from jobs.lake import Lake
passed, reasons, _ = load_verdict(Lake(load_settings()), sys.argv[1])
for reason in reasons:
    print(f"   gate: {reason}")
PY
  elif [[ $code -ne 0 ]]; then
    echo "the DAG run failed; last lines of $log:"; tail -40 "$log"; exit 1
  fi
done
last=${DATES##* }

echo "== tables in the lake ($RECPIPE_LAKE_ROOT)"
"$BIN/recpipe" summary
echo "== a few users' home feed and the movies most similar to Star Wars (ds=$last)"
"$BIN/recpipe" show --ds "$last" --users 1,50,600 --similar 50 -n 10
echo "== releases"
"$BIN/recpipe" release list
bash scripts/demo_serve.sh
echo "demo finished in $(( $(date +%s) - t0 )) s"
