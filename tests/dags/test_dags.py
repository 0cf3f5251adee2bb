"""The DAG files import cleanly and wire the stages in the intended order."""

from pathlib import Path

import pytest

from recpipe.run import ordered
from recpipe.stages import NIGHTLY, WATCHER, bash_command

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "recpipe_nightly" in dagbag.dags


def test_nightly_graph(dagbag):
    dag = dagbag.dags["recpipe_nightly"]
    edges = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    assert ("fetch_data", "ingest_events") in edges
    assert ("ingest_events", "check_quality") in edges
    assert ("check_quality", "training_matrix") in edges
    assert ("load_catalog", "training_matrix") in edges
    assert {t.task_id for t in dag.tasks} == {s.task_id for s in NIGHTLY} | {WATCHER}
    for task in dag.tasks:
        # every task retries, except the gate (its verdict is deterministic) and the watcher
        assert task.retries == (0 if task.task_id in ("gate", WATCHER) else 2), task.task_id
    spark_tasks = {t.task_id for t in dag.tasks if t.pool == "spark"}
    assert spark_tasks == {s.task_id for s in NIGHTLY if s.spark}
    # the run's summary is written last, after a gate rejection too
    summary = dag.get_task("run_summary")
    assert summary.upstream_task_ids == {"publish"}
    assert summary.trigger_rule == "all_done"
    assert all(t.trigger_rule == "all_success" for t in dag.tasks
               if t.task_id not in ("run_summary", WATCHER))
    # ... and a failed stage still fails the run: the watcher hangs below every stage
    watcher = dag.get_task(WATCHER)
    assert watcher.trigger_rule == "one_failed"
    assert watcher.upstream_task_ids == {s.task_id for s in NIGHTLY}
    assert {t.task_id for t in dag.tasks if not t.downstream_task_ids} == {WATCHER}


def test_commands_use_the_logical_date_not_now(dagbag):
    dag = dagbag.dags["recpipe_nightly"]
    for task in dag.tasks:
        if "--ds" in task.bash_command:
            assert "--ds '{{ ds }}'" in task.bash_command or "--ds {{ ds }}" in \
                task.bash_command


def test_bash_command_renders_arguments_and_guard():
    stage = NIGHTLY[0]
    cmd = bash_command(stage, "/bin/recpipe", {"ds": "D", "landing": "/l x", "dataset": ""})
    assert cmd.startswith('if [ -n "" ]')
    assert "'/l x'" in cmd


def test_run_order_respects_dependencies():
    order = [s.task_id for s in ordered(NIGHTLY)]
    for stage in NIGHTLY:
        for up in stage.upstream:
            assert order.index(up) < order.index(stage.task_id)


def test_parsing_reads_no_environment_and_tasks_load_settings_when_they_run(monkeypatch):
    """The DAG file is the same whatever the DAG processor's environment: the profile and
    the landing folder are read by each task when it runs (it inherits the worker's
    environment), not baked in at parse time."""
    from airflow.dag_processing.dagbag import DagBag

    from conf import load_settings

    def commands() -> dict[str, tuple]:
        dag = DagBag(dag_folder=str(DAGS)).dags["recpipe_nightly"]
        return {t.task_id: (t.bash_command, t.env, str(t.params.get("landing")))
                for t in dag.tasks}

    plain = commands()
    monkeypatch.setenv("RECPIPE_ENV", "cluster")
    monkeypatch.setenv("RECPIPE_LANDING", "/elsewhere")
    assert commands() == plain
    assert all(env is None for _, env, _ in plain.values())
    assert "/elsewhere" not in str(plain) and "var/landing" not in str(plain)
    # what a task then loads on a cluster worker: its Spark master and the object-store lake
    cluster = load_settings(environ={"RECPIPE_ENV": "cluster"})
    assert cluster.spark.master == "yarn"
    assert cluster.lake_path("gold", "topn").startswith("s3a://")
    assert int(cluster.spark.conf["spark.executor.instances"]) > 1


def test_every_task_of_both_dags_comes_from_the_one_factory(dagbag):
    from recpipe.airflow_tasks import log_failure

    for dag_id in ("recpipe_nightly", "recpipe_hourly"):
        for task in dagbag.dags[dag_id].tasks:
            if task.task_id != WATCHER:
                assert task.on_failure_callback in (log_failure, [log_failure]), task.task_id
