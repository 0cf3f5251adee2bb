"""The FastAPI application of the lookup service (DESIGN.md section 5).

Every error is a JSON ``{"error": {"status", "code", "message", "details"}}`` with a 4xx
status (503 while no verified release is loaded or the spool cannot write); no stack trace
ever leaves the process.
"""


import hmac
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from conf.errors import SpoolError, StoreUnavailable
from conf.serving import ServingSettings
from serving_export.realtime import NEGATIVE_EVENTS, Interaction, RealtimeStore, Recent
from serving_export.release_reader import Release
from serving_export.service import answers
from serving_export.service.metrics import Metrics, endpoint_of
from serving_export.service.models import (
    ID_PATTERN,
    MAX_ID,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    Event,
    EventBatch,
    EventsAccepted,
    Filters,
    Health,
    RerankRequest,
    RerankResponse,
    SimilarItems,
    UserRecommendations,
)
from serving_export.service.recommend import recommend_user, rerank, similar_items
from serving_export.service.state import ServiceState
from serving_export.spool import EventSpool

logger = logging.getLogger(__name__)

JSON = "application/json"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)
}
FILTERS_DOC = (
    "JSON object of serve-time filters, e.g. "
    '`{"include_categories":["Comedy"],"exclude_item_ids":["42"],"available_only":true}`. '
    "Keys: include_categories, exclude_categories, exclude_item_ids, available_only, "
    "exclude_purchased, exclude_recent, blend_similar (schema: `Filters`). "
    "Malformed JSON is a 400, a wrong key or type a 422."
)
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "body_too_large",
                 415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
                 503: "unavailable"}


def query_args(raw: bytes) -> dict[str, str]:
    """A query string's parameters (the last value of a repeated name wins), as Starlette's
    ``QueryParams`` would decode them; plain ``name=value`` pairs without escapes are split
    directly, anything with ``%`` or ``+`` goes through ``urllib.parse.parse_qsl``."""
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    out: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            out[name] = value
    return out


class ApiError(Exception):
    """An answer with an error status (raised by handlers, rendered by the app)."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class BodyTooLarge(StarletteHTTPException):
    """The request body passed ``max_body_bytes`` while it was read."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


def error_body(status: int, code: str, message: str,
               details: list[dict[str, Any]] | None = None) -> bytes:
    """Encoded error envelope."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details:
        body["details"] = details
    return json.dumps({"error": body}, separators=(",", ":"), default=str).encode()


def _error(status: int, code: str, message: str, details: list | None = None) -> Response:
    return Response(error_body(status, code, message, details), status_code=status,
                    media_type=JSON)


def _clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")),
             "type": str(e.get("type"))} for e in errors]


def _summary(details: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])


class Guard:
    """Pure ASGI middleware: body size limit (413) and per-endpoint latency/status metrics."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics, max_body: int):
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        endpoint = endpoint_of(scope["path"])
        status = 500
        max_body = self.max_body

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                for key, value in scope["headers"]:
                    if key == b"content-length":
                        try:
                            length = int(value)
                        except ValueError:
                            length = -1
                        if length < 0 or length > max_body:
                            code = 413 if length > max_body else 400
                            msg = (f"request body larger than {max_body} bytes"
                                   if code == 413 else "malformed Content-Length")
                            await send_wrapper({"type": "http.response.start", "status": code,
                                                "headers": [(b"content-type", JSON.encode())]})
                            await send({"type": "http.response.body", "body": error_body(
                                code, _STATUS_CODES[code], msg)})
                            return
                received = 0

                async def limited_receive() -> Message:
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > max_body:
                            raise BodyTooLarge(max_body)
                    return message

                await self.app(scope, limited_receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - start)


class DirectRoute(APIRoute):
    """A route whose endpoint parses the request itself and returns a ``Response``: FastAPI's
    per-request dependency solving and response validation are skipped, which on a lookup
    costs more than the lookup. The OpenAPI entry is built as for any route (``openapi_extra``
    documents the hand-parsed parameters). Every GET endpoint uses it, ``/healthz`` too, so
    ``/healthz`` stays the service's own ceiling."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        if inspect.signature(endpoint).parameters:
            return endpoint

        async def handler(_: Request) -> Response:
            return await endpoint()

        return handler


def create_app(settings: ServingSettings, *, store: RealtimeStore | None = None,
               spool: EventSpool | None = None) -> FastAPI:
    """Build the service for ``settings`` (the release is loaded by a background task).

    Args:
        settings: serving settings (releases root, limits, store, spool, API key).
        store: a real-time store to use instead of the one the settings describe.
        spool: an event spool to use instead of ``settings.spool_dir``.
    """
    state = ServiceState(settings, store, spool)
    metrics = state.metrics
    max_n, default_n = settings.max_n, min(settings.default_n, settings.max_n)

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
    app.add_middleware(Guard, metrics=metrics, max_body=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        status = exc.status_code if exc.status_code < 500 else 503
        return _error(status, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        details = _clean_errors(list(exc.errors()))
        if any(d["type"] == "json_invalid" for d in details):
            return _error(400, "invalid_json", "request body is not valid JSON", details)
        return _error(422, "validation_error", _summary(details), details)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        logger.error("unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return _error(500, "internal_error", "internal error")

    def live() -> Release:
        rel = state.release
        if rel is None:
            raise ApiError(503, "no_release", "no verified release is loaded yet")
        return rel

    def check_surface(rel: Release, surface: str) -> None:
        if surface not in rel.surfaces:
            raise ApiError(422, "unknown_surface",
                           f"unknown surface {surface!r}; this release serves "
                           f"{list(rel.surfaces)}")

    def parse_filters(raw: str | None) -> Filters | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_filters", f"filters is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_filters", "filters must be a JSON object")
        try:
            return Filters.model_validate(data)
        except ValidationError as exc:
            details = _clean_errors(exc.errors())
            raise ApiError(422, "invalid_filters", _summary(details), details) from exc

    id_re = re.compile(ID_PATTERN)

    def path_id(request: Request, name: str) -> str:
        value = request.path_params[name]
        if not 0 < len(value) <= MAX_ID or not id_re.match(value):
            raise ApiError(422, "validation_error", f"{name}: must be 1-{MAX_ID} characters "
                           "without control characters",
                           [{"loc": ["path", name], "msg": "invalid id", "type": "value_error"}])
        return value

    def query_n(query: dict[str, str]) -> int:
        raw = query.get("n")
        if raw is None:
            return default_n
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if not 1 <= n <= max_n:
            raise ApiError(422, "validation_error", f"n: must be an integer from 1 to {max_n}, "
                           f"got {raw[:20]!r}", [{"loc": ["query", "n"], "msg": "out of range",
                                                  "type": "value_error"}])
        return n

    def doc_params(*names: str) -> dict[str, Any]:
        """OpenAPI parameters of the hand-parsed GET endpoints (parsed without FastAPI's
        per-request dependency machinery, which costs more than the lookup itself)."""
        spec = {
            "user_id": {"name": "user_id", "in": "path", "required": True, "schema": {
                "type": "string", "minLength": 1, "maxLength": MAX_ID}},
            "item_id": {"name": "item_id", "in": "path", "required": True, "schema": {
                "type": "string", "minLength": 1, "maxLength": MAX_ID}},
            "surface": {"name": "surface", "in": "query", "required": False, "description":
                        "a surface of the live release (home_feed, email, ...)",
                        "schema": {"type": "string", "default": "home_feed"}},
            "n": {"name": "n", "in": "query", "required": False, "description":
                  f"items wanted (1-{max_n})", "schema": {"type": "integer", "minimum": 1,
                                                          "maximum": max_n,
                                                          "default": default_n}},
            "filters": {"name": "filters", "in": "query", "required": False,
                        "description": FILTERS_DOC, "content": {JSON: {"schema": {
                            "$ref": "#/components/schemas/Filters"}}}},
        }
        return {"parameters": [spec[name] for name in names]}

    direct = APIRouter(route_class=DirectRoute)

    @direct.get("/recommendations/users/{user_id}", response_model=UserRecommendations,
             responses=ERRORS, tags=["recommendations"],
             openapi_extra=doc_params("user_id", "surface", "n", "filters"))
    async def user_recommendations(request: Request) -> Response:
        """Precomputed recommendations for a user, adjusted at serve time.

        Removes items the user just interacted with, unavailable and purchased items,
        applies filters and boosts, blends in items similar to the last interactions;
        unknown users get their segment's (else overall) popular items.
        """
        user_id = path_id(request, "user_id")
        query = query_args(request.scope["query_string"])
        n = query_n(query)
        rel = live()
        surface = query.get("surface", "home_feed")
        check_surface(rel, surface)
        parsed = parse_filters(query.get("filters"))
        recent: Recent | None = None
        degraded = False
        try:
            recent = await state.store.recent(user_id)
        except StoreUnavailable:
            degraded = True
            metrics.degraded.labels("user").inc()
        source, entries, backfilled = recommend_user(rel, surface, user_id, n, parsed, recent,
                                                     state.blend)
        if source == "popular":
            metrics.fallbacks.labels("user", "cold_user").inc()
        elif backfilled:
            metrics.fallbacks.labels("user", "backfill").inc()
        return Response(answers.user_answer(rel, user_id, surface, source, degraded, entries),
                        media_type=JSON)

    @direct.get("/recommendations/items/{item_id}/similar", response_model=SimilarItems,
             responses=ERRORS, tags=["recommendations"],
             openapi_extra=doc_params("item_id", "n", "filters"))
    async def similar(request: Request) -> Response:
        """Items similar to an item (404 if the release does not know it)."""
        item_id = path_id(request, "item_id")
        query = query_args(request.scope["query_string"])
        n = query_n(query)
        rel = live()
        parsed = parse_filters(query.get("filters"))
        row = rel.item_row(item_id)
        if row < 0:
            raise ApiError(404, "unknown_item", f"item {item_id!r} is not in release {rel.id}")
        source, entries = similar_items(rel, row, n, parsed)
        if source != "similar":
            metrics.fallbacks.labels("similar", "popular").inc()
        return Response(answers.similar_answer(rel, item_id, source, False, entries),
                        media_type=JSON)

    @app.post("/recommendations/batch", response_model=BatchResponse, responses=ERRORS,
              tags=["recommendations"])
    async def batch(body: BatchRequest) -> Response:
        """Recommendations for up to ``max_batch_users`` users (e.g. an email campaign)."""
        rel = live()
        if len(body.user_ids) > settings.max_batch_users:
            raise ApiError(422, "too_many_users", f"{len(body.user_ids)} users; at most "
                           f"{settings.max_batch_users} per request")
        if body.n > max_n:
            raise ApiError(422, "validation_error", f"n={body.n} out of range 1-{max_n}")
        check_surface(rel, body.surface)
        degraded = False
        try:
            recents: list[Recent | None] = list(await state.store.recent_many(body.user_ids))
        except StoreUnavailable:
            recents = [None] * len(body.user_ids)
            degraded = True
            metrics.degraded.labels("batch").inc()
        results = []
        cold = 0
        for user_id, recent in zip(body.user_ids, recents, strict=True):
            source, entries, _ = recommend_user(rel, body.surface, user_id, body.n,
                                                body.filters, recent, state.blend)
            cold += source == "popular"
            results.append(answers.user_answer(rel, user_id, body.surface, source, degraded,
                                               entries))
        if cold:
            metrics.fallbacks.labels("batch", "cold_user").inc(cold)
        return Response(answers.batch_answer(rel, degraded, results), media_type=JSON)

    @app.post("/recommendations/rerank", response_model=RerankResponse, responses=ERRORS,
              tags=["recommendations"])
    async def rerank_items(body: RerankRequest) -> Response:
        """Order candidate items (e.g. search results) by the user's embedding."""
        rel = live()
        if len(body.item_ids) > settings.max_rerank_items:
            raise ApiError(422, "too_many_items", f"{len(body.item_ids)} items; at most "
                           f"{settings.max_rerank_items} per request")
        source, rows = rerank(rel, body.user_id, body.item_ids)
        if source != "reranked":
            metrics.fallbacks.labels("rerank", "popular").inc()
        return Response(answers.rerank_answer(rel, body.user_id, source, False, rows),
                        media_type=JSON)

    @app.post("/events/interactions", status_code=202, response_model=EventsAccepted,
              responses=ERRORS, tags=["events"],
              openapi_extra={"requestBody": {"required": True, "content": {JSON: {
                  "schema": {"$ref": "#/components/schemas/EventBatch"}}}}})
    async def interactions(
        request: Request,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> Response:
        """Record interactions: durably spooled for the next ingest, then applied to the
        real-time store. Needs the ``X-API-Key`` header."""
        if state.api_key is None:
            raise ApiError(401, "unauthorized", "writes are disabled: the service has no "
                           "API key configured")
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), state.api_key):
            raise ApiError(401, "unauthorized", "missing or invalid X-API-Key")
        raw = await request.body()
        try:
            events = EventBatch.model_validate_json(raw).events
        except ValidationError as exc:
            details = _clean_errors(exc.errors())
            if any(d["type"] == "json_invalid" for d in details):
                raise ApiError(400, "invalid_json", "request body is not valid JSON",
                               details) from exc
            raise ApiError(422, "validation_error", _summary(details), details) from exc
        if len(events) > settings.max_events:
            raise ApiError(422, "too_many_events", f"{len(events)} events; at most "
                           f"{settings.max_events} per request")
        now = datetime.now(UTC)
        records, interactions_ = [], []
        for ev in events:
            ts = ev.ts or now
            ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
            event_id = ev.event_id or uuid.uuid4().hex
            records.append({
                "event_id": event_id, "user_id": ev.user_id, "item_id": ev.item_id,
                "event_type": ev.event_type, "value": ev.value,
                "ts": ts.isoformat().replace("+00:00", "Z"), "surface": ev.surface,
            })
            interactions_.append(Interaction(ev.user_id, ev.item_id, ts.timestamp(),
                                             ev.event_type not in NEGATIVE_EVENTS))
        try:
            await state.event_spool().append(records)
        except (SpoolError, OSError) as exc:
            logger.error("spool write failed: %s", exc)
            raise ApiError(503, "spool_unavailable",
                           "events could not be recorded durably; retry later") from exc
        for ev in events:
            metrics.events.labels(ev.event_type).inc()
        degraded = False
        try:
            await state.store.record(interactions_)
        except StoreUnavailable:
            degraded = True
            metrics.degraded.labels("events").inc()
        body = EventsAccepted(accepted=len(records),
                              event_ids=[r["event_id"] for r in records], degraded=degraded)
        return Response(body.model_dump_json(), status_code=202, media_type=JSON)

    healthy = Health(status="ok").model_dump_json(exclude_none=True).encode()

    @direct.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return Response(healthy, media_type=JSON)

    @direct.get("/readyz", response_model=Health, responses={503: {"model": Health}},
             tags=["operations"])
    async def readyz() -> Response:
        """Readiness: 200 only once a verified release is loaded."""
        rel = state.release
        if rel is None:
            return Response(Health(status="not_ready", store=state.store.kind)
                            .model_dump_json(exclude_none=True), status_code=503,
                            media_type=JSON)
        return Response(Health(status="ready", release_id=rel.id, load_s=state.load_s,
                               store=state.store.kind).model_dump_json(), media_type=JSON)

    @direct.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(direct)
    # Starlette tries routes in order: the lookups first, then the docs and POST endpoints
    # (no two routes share a path and method, so the order changes no answer)
    app.router.routes.sort(key=lambda route: not isinstance(route, DirectRoute))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (EventBatch, Event, Filters):
                extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(extra.pop("$defs", {}))
                components[model.__name__] = extra
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
