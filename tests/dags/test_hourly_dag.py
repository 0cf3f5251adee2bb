"""The hourly DAG parses cleanly, wires ingest, the parent choice and the release in order,
and uses the logical time."""

import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recpipe.run import PIPELINES, ordered
from recpipe.stages import HOURLY, NIGHTLY

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.dags["recpipe_hourly"]


def test_graph_is_ingest_then_parent_then_release(dag):
    edges = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    assert {t.task_id for t in dag.tasks} == {"ingest_spool", "choose_parent", "refresh_users"}
    assert edges == {("ingest_spool", "choose_parent"), ("choose_parent", "refresh_users")}
    assert {t.task_id for t in dag.tasks} == {s.task_id for s in HOURLY}
    for task in dag.tasks:
        assert task.retries >= 1
        assert task.pool == ("default_pool" if task.task_id == "choose_parent" else "spark")
        assert task.on_failure_callback  # the same factory as the nightly's
    assert dag.max_active_runs == 1 and not dag.catchup


def test_the_release_step_gets_its_parent_from_the_parent_task(dag):
    chooser, release = dag.get_task("choose_parent"), dag.get_task("refresh_users")
    assert chooser.do_xcom_push
    assert "release parent" in chooser.bash_command
    assert "xcom_pull(task_ids=" in release.bash_command and "choose_parent" in \
        release.bash_command
    assert "CURRENT" not in release.bash_command


def test_runs_every_hour_at_the_logical_time(dag):
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    encoded = encode_timetable(dag.timetable)
    assert encoded["__type"] == "airflow.timetables.trigger.CronTriggerTimetable"
    assert encoded["__var"]["expression"] == "0 * * * *"
    assert encoded["__var"]["timezone"] == "UTC"
    # the scheduler's side of that timetable: the run due at 11:00 has logical time 11:00
    core = decode_timetable(encoded)
    import pendulum

    info = core.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2024, 5, 1, 10, 30, tz="UTC"),
                                    latest=None, catchup=True))
    assert info.logical_date == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert info.run_after == info.logical_date


def test_commands_take_date_and_hour_from_the_logical_date(dag):
    cmds = {t.task_id: t.bash_command for t in dag.tasks}
    for cmd in cmds.values():
        assert "--ds '{{ ds }}'" in cmd
        assert "--hour '{{ logical_date.hour }}'" in cmd
        assert "now" not in cmd
    assert cmds["ingest_spool"].split()[1] == "hourly" and "--spool" in cmds["ingest_spool"]
    assert "release hourly" in cmds["refresh_users"]


def test_hourly_command_renders_with_airflow_templates(dag):
    from jinja2 import Environment

    task = dag.get_task("ingest_spool")
    text = Environment().from_string(task.bash_command).render(
        ds="1998-04-23", logical_date=datetime(1998, 4, 23, 7, tzinfo=UTC),
        params={"spool": "/srv/spool"})
    assert shlex.split(text)[1:] == ["hourly", "--ds", "1998-04-23", "--hour", "7", "--spool",
                                     "/srv/spool"]
    release = dag.get_task("refresh_users")
    text = Environment().from_string(release.bash_command).render(
        ds="1998-04-23", logical_date=datetime(1998, 4, 23, 7, tzinfo=UTC),
        ti=type("TI", (), {"xcom_pull": staticmethod(
            lambda task_ids: f"parent-from-{task_ids}")}))
    assert shlex.split(text)[1:] == ["release", "hourly", "--ds", "1998-04-23", "--hour", "7",
                                     "--parent", "parent-from-choose_parent"]


def test_recpipe_run_knows_both_pipelines_and_keeps_nightly():
    assert PIPELINES == {"nightly": NIGHTLY, "hourly": HOURLY}
    assert [s.task_id for s in ordered(HOURLY)] == ["ingest_spool", "choose_parent",
                                                    "refresh_users"]
    args = HOURLY[0].argv(ds="D", hour="5", spool="")
    assert args == ["hourly", "--ds", "D", "--hour", "5", "--spool", ""]


def test_recpipe_run_hourly_needs_an_hour(capsys):
    from recpipe.run import main

    with pytest.raises(SystemExit) as exc:
        main(["hourly", "--date", "1998-04-23"])
    assert exc.value.code == 2
    assert "--hour" in capsys.readouterr().err
