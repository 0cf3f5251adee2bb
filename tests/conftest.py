"""Shared fixtures: one Spark session for the whole run, settings on a temporary lake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
"""The benchmark data beside the checkout (``../shared/data``)."""
IN_CI = bool(os.environ.get("CI"))
"""CI sets ``CI``: there, a missing dependency is a broken set-up, not a reason to skip."""


def require(available: bool, reason: str) -> None:
    """Go on when ``available``; else skip the test, or fail it in CI (``make test``
    installs everything a test needs, so a missing part there must be seen)."""
    if not available:
        (pytest.fail if IN_CI else pytest.skip)(reason)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _own_var(tmp_path, monkeypatch):
    """Settings loaded from the environment (commands run through ``recpipe.cli``) keep their
    run logs and MLflow store in the test's folder, not the checkout's ``var/``."""
    monkeypatch.setenv("RECPIPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RECPIPE_MLFLOW__TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("RECPIPE_MLFLOW__ARTIFACT_ROOT", str(tmp_path / "mlflow-artifacts"))


def recpipe(args: list[str]) -> int:
    """Run ``recpipe ARGS`` in this process as the command line does (errors become a
    message on stderr and an exit code in ``recpipe.cli``); returns the exit code."""
    from recpipe.cli import main

    return main(args)


@pytest.fixture
def settings(tmp_path):
    """Settings whose lake and data folders live in a fresh temporary directory."""
    from conf import load_settings

    return load_settings(overrides={
        "lake_root": str(tmp_path / "lake"),
        "data_dir": str(tmp_path / "data"),
        "spark": {"shuffle_partitions": 2},
    })


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of the test run (few shuffle partitions)."""
    from conf import load_settings
    from jobs.spark import get_spark

    cfg = load_settings(overrides={"lake_root": "unused", "spark": {
        "master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"}})
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One real single-node Kafka broker (KRaft, loopback) for the run. A test that kills it
    starts it again before it ends."""
    from bench.kafka_broker import KafkaBroker, kafka_installed

    require(kafka_installed(), "Kafka broker jars not installed (make deps fetches them)")
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture
def topic_settings(kafka, tmp_path):
    """Event stream settings on the test broker with a topic and group of this test's own."""
    from conf.events import EventStreamSettings

    name = f"events-{tmp_path.name}".replace("_", "-")[:200]
    return EventStreamSettings(kafka_bootstrap=kafka.bootstrap, topic=name, group=f"g-{name}",
                               partitions=3, produce_timeout_s=2.0, retry_s=0.3,
                               fallback_dir=str(tmp_path / "kafka-fallback"), batch_max_s=5.0)
