"""A backfill through Airflow's own command, executed by a real scheduler, on MovieLens 100K.

``airflow backfill create --dag-id recpipe_nightly --from-date 1998-04-20 --to-date
1998-04-22`` in an AIRFLOW_HOME of its own: the scheduler (LocalExecutor, SQLite) and the
API server its tasks report to (on a free loopback port) run for the test and are stopped
at the end, pass or fail, with every process they started.

The same scheduler run covers retries: the first date's catalogue file arrives late. It is
absent when ``load_catalog`` first runs, the test waits until Airflow has put that task up
for retry, then puts the file in place; the second try succeeds and the run completes.

Prints the backfill's wall time and each date's outcome.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from conf import load_settings
from jobs.lake import Lake
from recpipe.dagrun import AFTER_GATE, outcome
from recpipe.stages import WATCHER

from .conftest import BIN, HOLDOUT_DAYS, REPO, pipeline_env, run_checked

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "recpipe_nightly"
DATES = ("1998-04-20", "1998-04-21", "1998-04-22")  # MovieLens 100K ends on 1998-04-22
LATE = DATES[0]
"""The date whose catalogue file (``items.parquet``) is missing when its task first runs."""
LATE_TASK = "load_catalog"
TIMEOUT_S = 45 * 60
FINISHED = {"success", "failed"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _airflow(env: dict[str, str], *args: str) -> str:
    """Run an ``airflow`` CLI command to completion; its stdout, or fail with its output."""
    proc = subprocess.run([str(BIN / "airflow"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _airflow_json(env: dict[str, str], *args: str) -> list[dict]:
    out = _airflow(env, *args, "-o", "json")
    # the CLI may print warnings (e.g. "[warning ] Could not import graphviz") before it
    lines = [line for line in out.splitlines() if line.startswith(("[{", "[]"))]
    assert lines, out
    return json.loads(lines[-1])


def _query(db: Path, sql: str, *params) -> list[tuple]:
    """Read Airflow's metadata database (read-only) for what its CLI does not print:
    a task instance's try number and a run's type."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                            timeout=30)) as con:
        return con.execute(sql, params).fetchall()


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def _stop(procs: list[subprocess.Popen], grace_s: float = 30) -> None:
    """Stop each process and every process it started: SIGTERM, then SIGKILL after the grace.

    Task processes start sessions of their own, so killing a process group would miss them:
    the whole tree is collected before anything is signalled."""
    tree: list[psutil.Process] = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(p.pid)
            tree += [root, *root.children(recursive=True)]
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _airflow_services(env: dict[str, str], tmp: Path, port: int):
    """The scheduler and the API server's execution API, until the block ends (also when
    the test fails, is interrupted or gets SIGTERM, e.g. from a CI timeout)."""
    commands = {
        "api-server": ["api-server", "--apps", "execution", "--workers", "1",
                       "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": ["scheduler", "--skip-serve-logs"],
    }
    procs: dict[str, subprocess.Popen] = {}
    logs = []
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name, args in commands.items():
            log = (tmp / f"{name}.log").open("w")
            logs.append(log)
            procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=env, cwd=REPO,
                                           stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not _port_open(port):
            for name, p in procs.items():
                assert p.poll() is None, f"{name} exited:\n{_tail(tmp / f'{name}.log')}"
            assert time.monotonic() < deadline, _tail(tmp / "api-server.log")
            time.sleep(1)
        yield procs
    finally:
        _stop(list(procs.values()))
        for log in logs:
            log.close()
        signal.signal(signal.SIGTERM, previous)


def _backfill_env(tmp: Path, port: int) -> dict[str, str]:
    env = pipeline_env(tmp)
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # two cores; Spark tasks queue in the pool
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        # the scheduler runs the backfill's runs only: no run of its own for "yesterday"
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__RECPIPE__RETRY_DELAY_S": "10",  # the DAG's retry delay (30 by default)
    })
    return env


@pytest.fixture(scope="module")
def backfill(tmp_path_factory):
    """Backfill DATES with the scheduler running; returns a record of what happened."""
    tmp = tmp_path_factory.mktemp("backfill")
    port = _free_port()
    env = _backfill_env(tmp, port)
    db = tmp / "airflow" / "airflow.db"
    landing = tmp / "landing"
    run_checked([str(BIN / "recpipe"), "data", "fetch", "movielens-100k", "--out",
                 str(landing)], env, tmp / "fetch.log")
    late_file, aside = landing / "items.parquet", tmp / "late" / "items.parquet"
    aside.parent.mkdir()
    late_file.rename(aside)  # the catalogue file has not arrived yet

    started = time.monotonic()
    _airflow(env, "db", "migrate")
    _airflow(env, "pools", "set", "spark", "1", "Spark-heavy tasks, one at a time")
    _airflow(env, "dags", "reserialize")  # the DAG into the database, no DAG processor
    record: dict = {"tmp": tmp, "env": env, "db": db}
    with _airflow_services(env, tmp, port) as procs:
        t0 = time.monotonic()
        # one run at a time, in date order: as the DAG's own max_active_runs for schedules
        _airflow(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", DATES[0],
                 "--to-date", DATES[-1], "--max-active-runs", "1", "--dag-run-conf",
                 json.dumps({"dataset": "", "landing": str(landing)}))
        runs = {r["logical_date"][:10]: r["run_id"]
                for r in _airflow_json(env, "dags", "list-runs", DAG_ID)}
        assert sorted(runs) == list(DATES), runs
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            states = dict(_query(db, "SELECT run_id, state FROM dag_run WHERE dag_id = ?",
                                 DAG_ID))
            late = _query(db, "SELECT state, try_number FROM task_instance WHERE dag_id = ? "
                          "AND run_id = ? AND task_id = ?", DAG_ID, runs[LATE], LATE_TASK)
            if aside.exists() and late:
                state, try_number = late[0]
                assert state != "success", "the task succeeded without its file"
                if state == "up_for_retry":
                    aside.rename(late_file)  # the file arrives
                    record["restored_after_try"] = try_number
            if set(states.values()) <= FINISHED and len(states) == len(DATES):
                break
            for name, p in procs.items():
                assert p.poll() is None, f"{name} exited:\n{_tail(tmp / f'{name}.log')}"
            assert time.monotonic() < deadline, (
                f"backfill not done after {TIMEOUT_S} s: {states}\n"
                f"{_tail(tmp / 'scheduler.log')}")
            time.sleep(1)
        record["backfill_s"] = time.monotonic() - t0
        record["runs"] = runs
        record["list_runs"] = _airflow_json(env, "dags", "list-runs", DAG_ID)
        record["tasks"] = {ds: _airflow_json(env, "tasks", "states-for-dag-run", DAG_ID, run)
                           for ds, run in runs.items()}
    record["total_s"] = time.monotonic() - started
    print(f"\nbackfill of {len(DATES)} dates: {record['backfill_s']:.0f} s "
          f"(with Airflow setup and shutdown {record['total_s']:.0f} s)")
    words = {0: "success", 3: "the gate rejected the model, nothing published"}
    for run in sorted(record["list_runs"], key=lambda r: r["logical_date"]):
        ds = run["logical_date"][:10]
        secs = (datetime.fromisoformat(run["end_date"])
                - datetime.fromisoformat(run["start_date"])).total_seconds()
        print(f"   {ds}: {words.get(outcome(record['tasks'][ds]), 'FAILED')} in {secs:.0f} s")
    return record


def _lake(env: dict[str, str]) -> Lake:
    return Lake(load_settings(overrides={"lake_root": env["RECPIPE_LAKE_ROOT"]}))


def test_three_backfill_runs_end_well(backfill):
    runs = {r["logical_date"][:10]: r for r in backfill["list_runs"]}
    assert sorted(runs) == list(DATES)
    types = dict(_query(backfill["db"], "SELECT run_id, run_type FROM dag_run"))
    assert {types[r["run_id"]] for r in runs.values()} == {"backfill"}
    for ds in DATES:
        tasks = backfill["tasks"][ds]
        code = outcome(tasks)
        by_task = {t["task_id"]: t["state"] for t in tasks}
        detail = f"{ds}: {by_task}\n{_tail(backfill['tmp'] / 'scheduler.log', 2000)}"
        assert code in (0, 3), detail
        if code == 0:
            assert runs[ds]["state"] == "success", detail
            assert by_task[WATCHER] == "skipped", detail
        else:  # the gate rejected the model: export and publish did not run, the summary
            # was written, and the watcher marked the run failed for the operator to see
            assert not {t for t in AFTER_GATE if by_task[t] == "success"}, detail
            assert by_task["run_summary"] == "success", detail
            assert by_task[WATCHER] == "failed" and runs[ds]["state"] == "failed", detail


def test_a_date_is_published_if_and_only_if_its_gate_passed(backfill):
    from evaluation.gate import load_verdict
    from serving_export.release.publish import list_releases, read_history

    lake = _lake(backfill["env"])
    root = Path(backfill["env"]["RECPIPE_SERVING__RELEASES_ROOT"])
    published = {e["release_id"] for e in read_history(root)}
    for ds in DATES:
        passed, reasons, _ = load_verdict(lake, ds)
        assert (outcome(backfill["tasks"][ds]) == 0) == passed, (ds, reasons)
        released = [r.release_id for r in list_releases(root) if r.ds == ds]
        assert bool(set(released) & published) == passed, (ds, released, reasons)


def test_each_date_writes_its_own_partitions_and_sees_only_its_past(backfill):
    lake = _lake(backfill["env"])
    for table in ("bronze/events", "silver/items", "gold/training_matrix", "gold/candidates",
                  "gold/topn", "gold/evaluation"):
        assert set(DATES) <= set(lake.partitions(table)), table
    rows = []
    for ds in DATES:
        matrix = lake.read_arrow("gold/training_matrix", [ds]).to_pandas()
        assert set(matrix.ds) == {ds}
        cutoff = date.fromisoformat(ds) - timedelta(days=int(HOLDOUT_DAYS))
        # trained on the days up to the cutoff and none after it (there are ratings every
        # one of those days, so the newest one is the cutoff itself)
        assert matrix.last_ts.max().date() == cutoff, ds
        rows.append(len(matrix))
    assert rows == sorted(set(rows)), rows  # each later date has more history, none less
    # the first date received the whole file: ratings dated after ds + 1 day are future
    # events to it, quarantined; the later dates accept them
    early = lake.read_arrow("quarantine/events", [DATES[0]]).to_pandas()
    assert set(early.reason) == {"ts_out_of_range"} and len(early) > 0
    assert (early.ts.astype(str) >= "1998-04-22").all()
    assert lake.read_arrow("quarantine/events", [DATES[-1]]).num_rows == 0


def test_a_late_file_fails_the_task_once_and_the_retry_succeeds(backfill):
    assert backfill.get("restored_after_try") == 1, "the task never went up for retry"
    run_id = backfill["runs"][LATE]
    (state, try_number), = _query(
        backfill["db"], "SELECT state, try_number FROM task_instance WHERE dag_id = ? AND "
        "run_id = ? AND task_id = ?", DAG_ID, run_id, LATE_TASK)
    assert (state, try_number) == ("success", 2)
    logs = backfill["env"]["AIRFLOW_HOME"] + f"/logs/dag_id={DAG_ID}/run_id={run_id}/" \
                                            f"task_id={LATE_TASK}"
    first = Path(logs) / "attempt=1.log"
    assert "items.parquet" in first.read_text(errors="replace")  # failed for the file
    run = {r["logical_date"][:10]: r for r in backfill["list_runs"]}[LATE]
    # the run went on after the retry: it ends as its gate decides, not failed for the file
    gate_passed = outcome(backfill["tasks"][LATE]) == 0
    assert run["state"] == ("success" if gate_passed else "failed")
    assert {t["task_id"]: t["state"] for t in backfill["tasks"][LATE]}["gate"] == (
        "success" if gate_passed else "failed")
