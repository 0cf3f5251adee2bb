"""recpipe_hourly: the hourly Airflow DAG (spool ingest -> parent -> incremental release).

Each task runs one ``recpipe`` command for the run's logical time: ``ds`` and the hour of
``logical_date`` (UTC). The schedule is a cron *trigger* (no data interval), so the run at
11:00 has the logical time 11:00 and folds in the events before it. The release the run
builds on is chosen by its ``choose_parent`` task and passed to ``refresh_users``. The
stage table lives in ``recpipe.stages`` and :func:`recpipe.airflow_tasks.add_tasks` makes the
tasks, as for the nightly DAG. Parsing this file imports nothing heavy, reads no database
and no environment.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, Param

from recpipe.airflow_tasks import add_tasks
from recpipe.stages import HOURLY

RECPIPE = str(Path(sys.executable).with_name("recpipe"))
VALUES = {"ds": "{{ ds }}", "hour": "{{ logical_date.hour }}", "spool": "{{ params.spool }}"}

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
    add_tasks(HOURLY, RECPIPE, VALUES)
