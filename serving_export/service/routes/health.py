"""``GET /healthz`` (liveness), ``/readyz`` (a verified release is loaded), ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from serving_export.service.errors import JSON
from serving_export.service.models import Health
from serving_export.service.state import ServiceState


def add_routes(router: APIRouter, state: ServiceState) -> None:
    healthy = Health(status="ok", worker=os.getpid()).model_dump_json(
        exclude_none=True).encode()

    @router.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return Response(healthy, media_type=JSON)

    @router.get("/readyz", response_model=Health, responses={503: {"model": Health}},
                tags=["operations"])
    async def readyz() -> Response:
        """Readiness: 200 only once a verified release is loaded."""
        rel = state.release
        if rel is None:
            return Response(Health(status="not_ready", store=state.store.kind)
                            .model_dump_json(exclude_none=True), status_code=503,
                            media_type=JSON)
        return Response(Health(status="ready", release_id=rel.id, load_s=state.load_s,
                               store=state.store.kind, worker=os.getpid()).model_dump_json(),
                        media_type=JSON)

    @router.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
