"""``recpipe serve [--host H] [--port P] [--releases-root DIR]``: run the service."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from conf import ConfigError, load_settings

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recpipe serve", description=__doc__)
    parser.add_argument("--host", help="bind address (default: serving.host)")
    parser.add_argument("--port", type=int, help="TCP port (default: serving.port)")
    parser.add_argument("--releases-root", help="releases folder (default: serving.releases_root)")
    parser.add_argument("--redis-url", help="real-time store (default: serving.redis_url)")
    parser.add_argument("--spool-dir", help="event spool folder (default: serving.spool_dir)")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str]) -> int:
    """Parse arguments, load settings, serve until interrupted; 2 on bad arguments."""
    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port,
        "releases_root": args.releases_root and str(Path(args.releases_root).resolve()),
        "redis_url": args.redis_url,
        "spool_dir": args.spool_dir and str(Path(args.spool_dir).resolve()),
    }.items() if v is not None}
    try:
        settings = load_settings(overrides={"serving": overrides})
    except ConfigError as exc:
        print(f"recpipe serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from serving_export.service.app import create_app
    from serving_export.service.http import server_config

    serving = settings.serving
    if serving.api_key is None:
        logger.warning("no serving.api_key (RECPIPE_SERVING__API_KEY): event writes refused")
    app = create_app(serving)
    uvicorn.Server(server_config(app, serving.host, serving.port,
                                 log_level=args.log_level)).run()
    return 0
