"""The nightly on MovieLens 100K with the distributed embedding backend (Spark MLlib ALS at
its default settings: 15 iterations, checkpointed), end to end without a scheduler."""

from __future__ import annotations

import json
import subprocess

import pytest

from conf import load_settings
from jobs.embeddings import model_version, resolve_seed
from jobs.lake import Lake
from jobs.tables import ITEM_EMBEDDINGS, USER_EMBEDDINGS
from recpipe.stages import NIGHTLY

from .conftest import BIN, DS, REPO, pipeline_env, run_checked

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def spark_nightly(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-als-nightly")
    env = {**pipeline_env(tmp), "RECPIPE_ALS__BACKEND": "spark",
           "RECPIPE_WORK_DIR": str(tmp / "work")}
    log = tmp / "run.log"
    run_checked([str(BIN / "recpipe"), "run", "nightly", "--date", DS, "--dataset",
                 "movielens-100k", "--landing", str(tmp / "landing")], env, log)
    summary = json.loads([line for line in log.read_text().splitlines()
                          if line.startswith('{"pipeline"')][-1])
    return env, tmp, summary


def test_every_task_runs_and_the_release_goes_live(spark_nightly):
    env, tmp, summary = spark_nightly
    assert sorted(summary["seconds"]) == sorted(s.task_id for s in NIGHTLY)
    verdict = subprocess.run([str(BIN / "recpipe"), "release", "list"], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    live = [line for line in verdict.splitlines() if line.startswith("*")]  # * marks CURRENT
    assert len(live) == 1, verdict
    assert f"ds={DS}" in live[0] and "gate=passed" in live[0] and "complete" in live[0]


def test_the_vectors_come_from_mllib_and_its_checkpoints_are_gone(spark_nightly):
    env, tmp, _ = spark_nightly
    settings = load_settings(overrides={"lake_root": env["RECPIPE_LAKE_ROOT"],
                                        "als": {"backend": "spark"}})
    lake = Lake(settings)
    expected = model_version(DS, settings.als, resolve_seed(settings.als, settings.seed))
    for table in (USER_EMBEDDINGS, ITEM_EMBEDDINGS):
        versions = set(lake.read_arrow(table.name, [DS]).column("model_version").to_pylist())
        assert versions == {expected}, table.name
    assert settings.als.iterations > settings.als.spark_checkpoint_interval
    checkpoints = tmp / "work" / "checkpoints"
    assert checkpoints.is_dir() and not any(checkpoints.iterdir())
