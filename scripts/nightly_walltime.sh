#!/usr/bin/env bash
# Wall time of the nightly DAG, per task: `bash scripts/nightly_walltime.sh DATASET [WORKDIR]`
# with DATASET `movielens-100k` or `ml-1m`. Runs `recpipe_nightly` through `airflow dags test`
# for two dates (the first night's candidates train the second night's ranker), isolated in
# WORKDIR (default: a new temporary folder, kept): lake, runs, releases, spool, MLflow and
# Airflow home all live there, as in tests/e2e/conftest.py. Prints each task's state and
# seconds (python -m recpipe.dagrun), each night's wall time and the load average around it.
#
# Settings per dataset (environment variables, see README "Nightly wall time"):
#   movielens-100k: nights 1998-04-08, 1998-04-22; holdout and label window 14 days.
#   ml-1m (synthetic timestamps over 180 days to 2003-02-28): nights 2003-02-21, 2003-02-28;
#     holdout 36 days (about the shared test split), label window 7 days; clicks excluded
#     from candidates (an ML-1M interaction is a film already seen).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATASET=${1:?usage: $0 movielens-100k|ml-1m [WORKDIR]}
T=${2:-$(mktemp -d -t "recpipe-walltime-$DATASET.XXXX")}
mkdir -p "$T"
T=$(cd "$T" && pwd)
case $DATASET in
  movielens-100k)
    DATES="1998-04-08 1998-04-22"
    export RECPIPE_MATRIX__HOLDOUT_DAYS=14 RECPIPE_RANKER__LABEL_DAYS=14
    export RECPIPE_DATA_DIR=${RECPIPE_DATA_DIR:-$ROOT/var/data}  # download cache, reused
    ;;
  ml-1m)
    DATES="2003-02-21 2003-02-28"
    export RECPIPE_MATRIX__HOLDOUT_DAYS=36 RECPIPE_RANKER__LABEL_DAYS=7
    export RECPIPE_CANDIDATES__EXCLUDE_EVENT_TYPES="[purchase, rating, click]"
    ;;
  *) echo "unknown dataset $DATASET (movielens-100k or ml-1m)" >&2; exit 2 ;;
esac
export RECPIPE_LAKE_ROOT=$T/lake RECPIPE_RUNS_DIR=$T/runs
export RECPIPE_SERVING__RELEASES_ROOT=$T/releases RECPIPE_SERVING__SPOOL_DIR=$T/spool
export RECPIPE_MLFLOW__TRACKING_URI=sqlite:///$T/mlflow.db
export RECPIPE_MLFLOW__ARTIFACT_ROOT=$T/mlflow-artifacts
export AIRFLOW_HOME=$T/airflow AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False SPARK_LOCAL_IP=127.0.0.1
BIN=$ROOT/.venv/bin
mkdir -p "$AIRFLOW_HOME"

echo "== $DATASET in $T ($(nproc) cores)"
"$BIN/airflow" db migrate >"$T/migrate.log" 2>&1 || { tail -20 "$T/migrate.log"; exit 1; }
"$BIN/airflow" pools set spark 1 spark >/dev/null
conf=$(printf '{"dataset": "%s", "landing": "%s"}' "$DATASET" "$T/landing")
for ds in $DATES; do
  log=$T/nightly-$ds.log
  echo "== recpipe_nightly ds=$ds; before: $(uptime | sed 's/.*load/load/')"
  t0=$(date +%s)
  "$BIN/airflow" dags test recpipe_nightly "$ds" -c "$conf" >"$log" 2>&1 || true
  t1=$(date +%s)
  echo "   after: $(uptime | sed 's/.*load/load/')"
  code=0; "$BIN/python" -m recpipe.dagrun recpipe_nightly "$log" || code=$?
  echo "   wall time $(( t1 - t0 )) s (airflow dags test, parsing included); log: $log"
  if [[ $code -ne 0 && $code -ne 3 ]]; then tail -40 "$log"; exit 1; fi
done
