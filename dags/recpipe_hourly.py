"""recpipe_hourly: the hourly Airflow DAG (spool ingest -> fold-in and incremental release).

Each task runs one ``recpipe hourly --step ...`` command for the run's logical time: ``ds``
and the hour of ``logical_date`` (UTC). The schedule is a cron *trigger* (no data interval),
so the run at 11:00 has the logical time 11:00 and folds in the events before it. The stage
list lives in ``recpipe.stages``. Parsing this file imports nothing heavy and reads no
database.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param

from recpipe.stages import HOURLY, bash_command

RECPIPE = str(Path(sys.executable).with_name("recpipe"))
VALUES = {"ds": "{{ ds }}", "hour": "{{ logical_date.hour }}", "spool": "{{ params.spool }}"}
PROFILE = {"RECPIPE_ENV": os.environ.get("RECPIPE_ENV", "local")}

with DAG(
    dag_id="recpipe_hourly",
    description="Hourly fold-in of new interactions and incremental release",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(1990, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=55),
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "spool": Param("", type="string",
                       description="event spool folder of the lookup service (empty: the "
                                   "setting serving.spool_dir, RECPIPE_SERVING__SPOOL_DIR)"),
    },
    tags=["recpipe"],
) as dag:
    tasks = {
        stage.task_id: BashOperator(
            task_id=stage.task_id,
            bash_command=bash_command(stage, RECPIPE, VALUES),
            env=PROFILE,
            append_env=True,
            pool="spark" if stage.spark else "default_pool",
        )
        for stage in HOURLY
    }
    for stage in HOURLY:
        for upstream in stage.upstream:
            tasks[upstream] >> tasks[stage.task_id]
