"""recpipe_nightly: the daily Airflow DAG (ingest -> validate -> training matrix -> ...).

Each task runs one ``recpipe`` command for the run's logical date ``ds``; the stage list
lives in ``recpipe.stages``. Parsing this file imports nothing heavy and reads no database.
The config profile (``RECPIPE_ENV``: ``local``, ``cluster``) is read from the environment
of the DAG processor and passed to every task. The retry delay's base in seconds is Airflow
configuration, ``[recpipe] retry_delay_s`` (``AIRFLOW__RECPIPE__RETRY_DELAY_S``, default 30):
a first retry waits 1-2 times it, later ones back off exponentially, at most 10 minutes.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, conf

from recpipe.stages import NIGHTLY, WATCHER, bash_command

log = logging.getLogger(__name__)
RECPIPE = str(Path(sys.executable).with_name("recpipe"))
DEFAULT_LANDING = str(Path(__file__).resolve().parents[1] / "var" / "landing")
VALUES = {"ds": "{{ ds }}", "landing": "{{ params.landing }}",
          "dataset": "{{ params.dataset }}"}
PROFILE = {"RECPIPE_ENV": os.environ.get("RECPIPE_ENV", "local")}
RETRY_DELAY = timedelta(seconds=conf.getfloat("recpipe", "retry_delay_s", fallback=30))


def log_failure(context) -> None:
    """Name the stage and date that failed, and why, in the task log."""
    ti = context.get("task_instance")
    log.error("recpipe stage %s failed for ds=%s (try %s): %s",
              getattr(ti, "task_id", "?"), context.get("ds"), getattr(ti, "try_number", "?"),
              context.get("exception"))


with DAG(
    dag_id="recpipe_nightly",
    description="Nightly training and precompute of recommendations",
    schedule="@daily",
    start_date=datetime(1990, 1, 1),  # backfills reach far back; catchup is off
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": log_failure,
    },
    params={
        "landing": Param(os.environ.get("RECPIPE_LANDING", DEFAULT_LANDING), type="string",
                         description="folder holding events.parquet, items.parquet, "
                                     "users.parquet for this run"),
        "dataset": Param(os.environ.get("RECPIPE_DATASET", ""), type="string",  # a setting
                         description="public dataset to fetch into landing first "
                                     "(e.g. movielens-100k); empty in production"),
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
            **({} if stage.retries is None else {"retries": stage.retries}),
            **({"trigger_rule": "all_done"} if stage.always else {}),
        )
        for stage in NIGHTLY
    }
    for stage in NIGHTLY:
        for upstream in stage.upstream:
            tasks[upstream] >> tasks[stage.task_id]
    watcher = BashOperator(  # recpipe.stages.WATCHER: runs only when a stage failed
        task_id=WATCHER,
        bash_command="echo 'a recpipe stage failed (or the gate rejected the model): this run "
                     "is marked failed; see the failed task and run_summary' >&2; exit 1",
        env=PROFILE, append_env=True, trigger_rule="one_failed", retries=0)
    list(tasks.values()) >> watcher
