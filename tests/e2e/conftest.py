"""One real nightly run on MovieLens 100K through Airflow, shared by the e2e tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DS = "1998-04-22"
FIRST_DS = "1998-04-08"
"""The first night: its candidates, labelled by the next two weeks, train DS's ranker."""
HOLDOUT_DAYS = "14"


def pipeline_env(tmp: Path) -> dict[str, str]:
    """Environment for a run isolated in ``tmp`` (lake, landing, Airflow home)."""
    env = dict(os.environ)
    env.update({
        "RECPIPE_LAKE_ROOT": str(tmp / "lake"),
        "RECPIPE_MATRIX__HOLDOUT_DAYS": HOLDOUT_DAYS,
        "RECPIPE_RANKER__LABEL_DAYS": HOLDOUT_DAYS,
        "RECPIPE_RUNS_DIR": str(tmp / "runs"),
        "RECPIPE_SERVING__RELEASES_ROOT": str(tmp / "releases"),
        "RECPIPE_SERVING__SPOOL_DIR": str(tmp / "spool"),
        "RECPIPE_MLFLOW__TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "RECPIPE_MLFLOW__ARTIFACT_ROOT": str(tmp / "mlflow-artifacts"),
        "RECPIPE_DATA_DIR": str(REPO / "var" / "data"),  # dataset download cache, reused
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SPARK_LOCAL_IP": "127.0.0.1",
    })
    return env


def run_checked(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        raise AssertionError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{tail}")


def dag_test(env: dict[str, str], tmp: Path, dag_id: str, ds: str, conf: dict,
             allowed: tuple[int, ...] = (0,)) -> int:
    """``airflow dags test`` one run; returns :mod:`recpipe.dagrun`'s outcome (0 success,
    3 gate rejection) and fails with the log's tail unless it is in ``allowed``."""
    log = tmp / f"{dag_id}-{ds}.log"
    with log.open("w") as fh:
        subprocess.run([str(BIN / "airflow"), "dags", "test", dag_id, ds, "-c",
                        json.dumps(conf)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                       cwd=REPO, check=False)
    states = subprocess.run([str(BIN / "python"), "-m", "recpipe.dagrun", dag_id, str(log)],
                            env=env, capture_output=True, text=True, cwd=REPO, check=False)
    assert states.returncode in allowed, states.stdout + log.read_text()[-3000:]
    return states.returncode


@pytest.fixture(scope="session")
def nightly_run(tmp_path_factory):
    """Run ``recpipe_nightly`` for FIRST_DS then DS with ``airflow dags test``; returns
    (env, tmp)."""
    tmp = tmp_path_factory.mktemp("nightly")
    env = pipeline_env(tmp)
    run_checked([str(BIN / "airflow"), "db", "migrate"], env, tmp / "migrate.log")
    run_checked([str(BIN / "airflow"), "pools", "set", "spark", "1", "spark"], env,
                tmp / "pool.log")
    conf = {"dataset": "movielens-100k", "landing": str(tmp / "landing")}
    # The first night may be rejected by the gate (a burst of brand-new users makes
    # popularity hard to beat without a ranker): then nothing may be published.
    first = dag_test(env, tmp, "recpipe_nightly", FIRST_DS, conf, allowed=(0, 3))
    (tmp / "first_outcome").write_text(str(first))
    dag_test(env, tmp, "recpipe_nightly", DS, conf)
    return env, tmp
