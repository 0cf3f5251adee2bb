"""recpipe_nightly: the daily Airflow DAG (ingest -> validate -> training matrix -> ...).

Each task runs one ``recpipe`` command for the run's logical date ``ds``; the stage list
lives in ``recpipe.stages``. Parsing this file imports nothing heavy and reads no database.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

from recpipe.stages import NIGHTLY, bash_command

RECPIPE = str(Path(sys.executable).with_name("recpipe"))
DEFAULT_LANDING = str(Path(__file__).resolve().parents[1] / "var" / "landing")
VALUES = {"ds": "{{ ds }}", "landing": "{{ params.landing }}",
          "dataset": "{{ params.dataset }}"}

with DAG(
    dag_id="recpipe_nightly",
    description="Nightly training and precompute of recommendations",
    schedule="@daily",
    start_date=datetime(1990, 1, 1),  # backfills reach far back; catchup is off
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "landing": Param(os.environ.get("RECPIPE_LANDING", DEFAULT_LANDING), type="string",
                         description="folder holding events.parquet, items.parquet, "
                                     "users.parquet for this run"),
        "dataset": Param(os.environ.get("RECPIPE_DATASET", ""), type="string",
                         description="public dataset to fetch into landing first "
                                     "(e.g. movielens-100k); empty in production"),
    },
    tags=["recpipe"],
) as dag:
    tasks = {
        stage.task_id: BashOperator(
            task_id=stage.task_id,
            bash_command=bash_command(stage, RECPIPE, VALUES),
            pool="spark" if stage.spark else "default_pool",
        )
        for stage in NIGHTLY
    }
    for stage in NIGHTLY:
        for upstream in stage.upstream:
            tasks[upstream] >> tasks[stage.task_id]
