#!/usr/bin/env bash
# `make airflow`: Airflow standalone (scheduler, API server, UI) with recpipe's DAGs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export AIRFLOW_HOME=${AIRFLOW_HOME:-$ROOT/var/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export SPARK_LOCAL_IP=127.0.0.1
export PATH=$ROOT/.venv/bin:$PATH
mkdir -p "$AIRFLOW_HOME"
airflow db migrate >/dev/null
airflow pools set spark 1 "Spark-heavy tasks, one at a time on one machine" >/dev/null
echo "Airflow UI: http://127.0.0.1:8080 (user admin)"
echo "admin password: written by Airflow to $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
exec airflow standalone
