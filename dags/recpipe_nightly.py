"""recpipe_nightly: the daily Airflow DAG (ingest -> validate -> training matrix -> ...).

Each task runs one ``recpipe`` command for the run's logical date ``ds``; the stage table
lives in ``recpipe.stages`` and :func:`recpipe.airflow_tasks.add_tasks` makes the tasks.
Parsing this file imports nothing heavy, reads no database and no environment: the tasks
load their settings (the profile ``RECPIPE_ENV``, the landing folder) when they run, and a
run's ``landing`` and ``dataset`` may be given in its conf. The retry delay's base in seconds
is Airflow configuration, ``[recpipe] retry_delay_s`` (default 30): a first retry waits 1-2
times it, later ones back off exponentially, at most 10 minutes.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, conf

from recpipe.airflow_tasks import add_tasks, add_watcher
from recpipe.stages import NIGHTLY

RECPIPE = str(Path(sys.executable).with_name("recpipe"))
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
        "retry_delay": timedelta(seconds=conf.getfloat("recpipe", "retry_delay_s",
                                                       fallback=30)),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "landing": Param("", type="string",
                         description="folder holding events.parquet, items.parquet, "
                                     "users.parquet for this run (empty: the setting landing)"),
        "dataset": Param("", type="string",
                         description="public dataset to fetch into landing first "
                                     "(e.g. movielens-100k); empty in production"),
    },
    tags=["recpipe"],
) as dag:
    add_watcher(add_tasks(NIGHTLY, RECPIPE, VALUES))
