"""The one factory that turns a stage table (``recpipe.stages``) into Airflow tasks.

Both DAG files call :func:`add_tasks`: every stage becomes a ``BashOperator`` running its
``recpipe`` command, in the ``spark`` pool when it starts Spark, with its own retries, the
``all_done`` trigger rule when it must always run, the failure callback that names the stage
and date in the log, and its output pushed to XCom for the stages that use it. Nothing here
reads the environment or a setting: the tasks load the settings when they run. Airflow is
imported inside the functions, so importing this module outside a DAG file costs nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from recpipe.stages import WATCHER, Stage, bash_command

log = logging.getLogger(__name__)


def log_failure(context: dict[str, Any]) -> None:
    """Name the stage and date that failed, and why, in the task log."""
    ti = context.get("task_instance")
    log.error("recpipe stage %s failed for ds=%s (try %s): %s",
              getattr(ti, "task_id", "?"), context.get("ds"), getattr(ti, "try_number", "?"),
              context.get("exception"))


def output_values(stages: tuple[Stage, ...]) -> dict[str, str]:
    """The placeholders the stages' outputs fill, as XCom templates of those stages."""
    # double quotes inside: the command is single-quoted for the shell (shlex.quote)
    return {s.output: '{{ ti.xcom_pull(task_ids="' + s.task_id + '") }}'
            for s in stages if s.output}


def add_tasks(stages: tuple[Stage, ...], recpipe: str, values: dict[str, str]
              ) -> dict[str, Any]:
    """Create one task per stage in the DAG being defined (a ``with DAG(...)`` block) and
    wire their dependencies.

    Args:
        stages: the stage table.
        recpipe: the ``recpipe`` executable the tasks run.
        values: Jinja templates of the placeholders (``{ds}``, ...); the stages' outputs are
            added (:func:`output_values`).

    Returns:
        task id -> operator.
    """
    from airflow.providers.standard.operators.bash import BashOperator

    values = {**values, **output_values(stages)}
    tasks = {}
    for stage in stages:
        options: dict[str, Any] = {}
        if stage.retries is not None:
            options["retries"] = stage.retries
        if stage.always:
            options["trigger_rule"] = "all_done"
        tasks[stage.task_id] = BashOperator(
            task_id=stage.task_id,
            bash_command=bash_command(stage, recpipe, values),
            pool="spark" if stage.spark else "default_pool",
            on_failure_callback=log_failure,
            do_xcom_push=stage.output is not None,
            **options,
        )
    for stage in stages:
        for upstream in stage.upstream:
            tasks[upstream] >> tasks[stage.task_id]
    return tasks


def add_watcher(tasks: dict[str, Any]) -> Any:
    """The task below every stage that fails when any stage failed (see
    :data:`recpipe.stages.WATCHER`)."""
    from airflow.providers.standard.operators.bash import BashOperator

    watcher = BashOperator(
        task_id=WATCHER,
        bash_command="echo 'a recpipe stage failed (or the gate rejected the model): this run "
                     "is marked failed; see the failed task and run_summary' >&2; exit 1",
        trigger_rule="one_failed", retries=0)
    list(tasks.values()) >> watcher
    return watcher
