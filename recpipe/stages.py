"""The pipeline's stages: one table that both Airflow DAGs (through
:func:`recpipe.airflow_tasks.add_tasks`) and ``recpipe run`` read.

A stage is one ``recpipe`` command with placeholders, filled at run time: ``{ds}`` (the
logical date), ``{landing}`` (the folder new events, items and users arrive in; empty: the
setting ``landing``), ``{dataset}`` (a public dataset to fetch into the landing folder
first; empty in production), and for the hourly pipeline ``{hour}``, ``{spool}`` (empty:
``serving.spool_dir``) and ``{parent}`` (the release an hourly run builds on, chosen by the
stage before it; empty: chosen by the same rule).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One task: its id, ``recpipe`` arguments, upstream task ids and resource class."""

    task_id: str
    args: tuple[str, ...]
    upstream: tuple[str, ...] = ()
    spark: bool = False
    """Uses a Spark session (runs in the ``spark`` pool so two don't overrun a machine)."""
    only_if: str | None = None
    """Run only when this placeholder is non-empty (e.g. ``dataset``)."""
    retries: int | None = None
    """Retries for this task (default: the DAG's). The gate's verdict is deterministic: a
    rejection is final, so it is not retried."""
    always: bool = False
    """Runs once its upstream tasks have ended, whether they succeeded or not (Airflow
    trigger rule ``all_done``): the run's summary is written after a rejection too."""
    output: str | None = None
    """The placeholder this stage's standard output (its last line) fills for later stages:
    Airflow passes it through XCom; ``recpipe run`` leaves it empty and the command that
    takes it derives the same value by the same rule."""

    def argv(self, **values: str) -> list[str]:
        """The command's arguments with placeholders filled from ``values``."""
        return [a.format(**values) for a in self.args]


NIGHTLY: tuple[Stage, ...] = (
    Stage("fetch_data", ("data", "fetch", "{dataset}", "--landing", "{landing}"),
          only_if="dataset"),
    Stage("ingest_events", ("ingest", "--landing", "{landing}", "--ds", "{ds}"),
          ("fetch_data",), spark=True),
    Stage("load_catalog", ("load-catalog", "--from-landing", "--landing", "{landing}",
                           "--ds", "{ds}"), ("fetch_data",)),
    Stage("check_quality", ("check", "--ds", "{ds}"), ("ingest_events",)),
    Stage("training_matrix", ("matrix", "--ds", "{ds}"), ("check_quality", "load_catalog"),
          spark=True),
    Stage("embeddings", ("embeddings", "--ds", "{ds}"), ("training_matrix",)),
    Stage("popularity", ("popularity", "--ds", "{ds}"), ("check_quality", "load_catalog"),
          spark=True),
    Stage("covisitation", ("covisitation", "--ds", "{ds}"), ("check_quality",), spark=True),
    Stage("content", ("content", "--ds", "{ds}"), ("embeddings", "load_catalog")),
    Stage("item_context", ("item-context", "--ds", "{ds}"),
          ("embeddings", "content", "popularity", "covisitation")),
    Stage("candidates", ("candidates", "--ds", "{ds}"), ("item_context",), spark=True),
    Stage("ranker_examples", ("ranker", "examples", "--ds", "{ds}"), ("candidates",),
          spark=True),
    Stage("ranker_train", ("ranker", "train", "--ds", "{ds}"), ("ranker_examples",)),
    Stage("topn", ("topn", "--ds", "{ds}"), ("candidates", "ranker_train"), spark=True),
    Stage("evaluate", ("evaluate", "--ds", "{ds}"), ("topn",)),
    Stage("gate", ("gate", "--ds", "{ds}"), ("evaluate",), retries=0),
    Stage("export", ("export", "--ds", "{ds}"), ("gate",)),
    Stage("publish", ("release", "publish", "--ds", "{ds}"), ("export",)),
    Stage("run_summary", ("status", "--ds", "{ds}", "--write"), ("publish",), always=True),
)

WATCHER = "mark_run_failed"
"""The nightly DAG's last task (Airflow only): trigger rule ``one_failed`` below every stage,
it fails when any stage failed, so the DAG run is marked failed although ``run_summary``
succeeded (Airflow derives a run's state from its leaf tasks: without it a crashed stage or
a gate rejection would end as a green run); when nothing failed it is skipped."""

HOURLY: tuple[Stage, ...] = (
    Stage("ingest_spool", ("hourly", "--ds", "{ds}", "--hour", "{hour}", "--spool", "{spool}"),
          spark=True),
    Stage("choose_parent", ("release", "parent", "--ds", "{ds}", "--hour", "{hour}"),
          ("ingest_spool",), output="parent"),
    Stage("refresh_users", ("release", "hourly", "--ds", "{ds}", "--hour", "{hour}",
                            "--parent", "{parent}"), ("choose_parent",), spark=True),
)
"""The hourly freshness path: ingest the spool's closed files (``jobs/hourly.py``), choose
the release to build on from the release history, then fold the new interactions into user
vectors, recompute those users' top-N and publish an incremental release
(``serving_export/release/hourly.py``). ``{ds}`` and ``{hour}`` are the logical time
``ds hour:00`` UTC."""


def bash_command(stage: Stage, recpipe: str, values: dict[str, str]) -> str:
    """A shell command line for ``stage`` (values may be Jinja templates for Airflow)."""
    cmd = " ".join([shlex.quote(recpipe), *(shlex.quote(a) for a in stage.argv(**values))])
    if stage.only_if:
        guard = values[stage.only_if]
        return f'if [ -n "{guard}" ]; then {cmd}; else echo "no {stage.only_if}: skipped"; fi'
    return cmd
