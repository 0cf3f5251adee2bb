"""``recpipe serve [--host H] [--port P] [--workers N] [--releases-root DIR]``: run the service.

With ``--workers N`` (``serving.workers``) N processes accept connections on one port. Each
maps the live release (memory-mapped files: the tables are in the page cache once, not
copied per worker), reloads it on its own when ``CURRENT`` moves, spools events to its own
files (named by process id) and shares real-time state through Redis, which is why more than
one worker needs ``serving.redis_url``. ``/metrics`` adds every worker's counters and
histograms up (Prometheus multi-process mode) and lists the release gauges per worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from conf import ConfigError, load_settings

logger = logging.getLogger(__name__)
ENV_PREFIX = "RECPIPE_SERVING__"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recpipe serve", description=__doc__)
    parser.add_argument("--host", help="bind address (default: serving.host)")
    parser.add_argument("--port", type=int, help="TCP port (default: serving.port)")
    parser.add_argument("--workers", type=int,
                        help="worker processes on the port (default: serving.workers)")
    parser.add_argument("--releases-root", help="releases folder (default: serving.releases_root)")
    parser.add_argument("--redis-url", help="real-time store (default: serving.redis_url)")
    parser.add_argument("--spool-dir", help="event spool folder (default: serving.spool_dir)")
    parser.add_argument("--kafka-bootstrap",
                        help="produce events to Kafka (default: events.kafka_bootstrap)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    return parser


def app_from_environment() -> Any:
    """The application as each worker process builds it, from the settings the parent put
    in the environment (``uvicorn`` calls this factory in every worker)."""
    from serving_export.service.app import create_app

    settings = load_settings()
    return create_app(settings.serving, stream=settings.events)


def main(argv: list[str]) -> int:
    """Parse arguments, load settings, serve until interrupted; 2 on bad arguments."""
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port, "workers": args.workers,
        "releases_root": args.releases_root and str(Path(args.releases_root).resolve()),
        "redis_url": args.redis_url,
        "spool_dir": args.spool_dir and str(Path(args.spool_dir).resolve()),
    }.items() if v is not None}
    try:
        stream = {"kafka_bootstrap": args.kafka_bootstrap} if args.kafka_bootstrap else {}
        settings = load_settings(overrides={"serving": overrides, "events": stream})
    except ConfigError as exc:
        print(f"recpipe serve: {exc}", file=sys.stderr)
        return 2
    serving = settings.serving
    if serving.workers > 1 and not serving.redis_url:
        print(f"recpipe serve: {serving.workers} workers need a shared real-time store: set "
              f"serving.redis_url (--redis-url or RECPIPE_SERVING__REDIS_URL); the in-process "
              f"store would give each worker its own view of a user's recent events",
              file=sys.stderr)
        return 2
    import uvicorn

    from serving_export.service.http import server_config

    if serving.api_key is None:
        logger.warning("no serving.api_key (RECPIPE_SERVING__API_KEY): event writes refused")
    if serving.workers == 1:
        from serving_export.service.app import create_app

        uvicorn.Server(server_config(create_app(serving, stream=settings.events),
                                     serving.host, serving.port,
                                     log_level=args.log_level)).run()
        return 0
    from uvicorn.supervisors import Multiprocess

    # The workers are spawned: they read the settings from the environment, with this
    # command's options in it; their metrics meet in one folder.
    for key, value in overrides.items():
        os.environ[f"{ENV_PREFIX}{key.upper()}"] = str(value)
    if args.kafka_bootstrap:
        os.environ["RECPIPE_EVENTS__KAFKA_BOOTSTRAP"] = args.kafka_bootstrap
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                          tempfile.mkdtemp(prefix="recpipe-metrics-"))
    config = server_config(f"{__name__}:app_from_environment", serving.host, serving.port,
                           factory=True, workers=serving.workers, log_level=args.log_level)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0
