"""The FastAPI application of the lookup service (DESIGN.md section 5).

:func:`create_app` assembles the parts: the guard middleware (:mod:`~.guard`), the error
envelope (:mod:`~.errors`), the endpoint groups (:mod:`~.routes`) and the OpenAPI document
(:mod:`~.openapi`). Every error is a JSON ``{"error": {"status", "code", "message",
"details"}}`` with a 4xx status (503 while no verified release is loaded or the spool cannot
write); no stack trace ever leaves the process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from conf.events import EventStreamSettings
from conf.serving import ServingSettings
from serving_export.service.errors import install_error_handlers
from serving_export.service.guard import Guard
from serving_export.service.lookups import DirectRoute, Lookups
from serving_export.service.openapi import install_openapi
from serving_export.service.realtime import RealtimeStore
from serving_export.service.routes import batch, events, health, similar, users
from serving_export.service.spool import EventSpool
from serving_export.service.state import ServiceState


def create_app(settings: ServingSettings, *, store: RealtimeStore | None = None,
               spool: EventSpool | None = None,
               stream: EventStreamSettings | None = None) -> FastAPI:
    """Build the service for ``settings`` (the release is loaded by a background task).

    Args:
        settings: serving settings (releases root, limits, store, spool, API key).
        store: a real-time store to use instead of the one the settings describe.
        spool: an event spool to use instead of ``settings.spool_dir``.
        stream: event stream settings; with ``kafka_bootstrap``, events go to Kafka.
    """
    state = ServiceState(settings, store, spool, stream)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="recpipe lookup service",
        version="1",
        description="Serves the live release: precomputed recommendations, similar items, "
                    "re-ranking, and intake of interaction events.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_middleware(Guard, metrics=state.metrics, max_body=settings.max_body_bytes)
    install_error_handlers(app)
    lookups = Lookups(state, settings)
    direct = APIRouter(route_class=DirectRoute)
    users.add_routes(direct, state, lookups)
    similar.add_routes(direct, state, lookups)
    batch.add_routes(app, state, lookups, settings)
    events.add_routes(app, state, settings)
    health.add_routes(direct, state)
    app.include_router(direct)
    # Starlette tries routes in order: the lookups first, then the docs and POST endpoints
    # (no two routes share a path and method, so the order changes no answer)
    app.router.routes.sort(key=lambda route: not isinstance(route, DirectRoute))
    install_openapi(app)
    return app
