"""``POST /events/interactions``: events spooled durably for the next ingest, then applied
to the real-time store (the next answer already suppresses them)."""

from __future__ import annotations

import hmac
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Header, Request
from fastapi.responses import Response
from pydantic import ValidationError

from conf.errors import SpoolError
from conf.pipeline import NEGATIVE_FEEDBACK
from conf.serving import ServingSettings
from serving_export.service.errors import ERRORS, JSON, ApiError, clean_errors, summary
from serving_export.service.models import EventBatch, EventsAccepted
from serving_export.service.realtime import NEGATIVE_EVENTS, Interaction, StoreUnavailable
from serving_export.service.state import ServiceState

logger = logging.getLogger(__name__)


def add_routes(app: FastAPI, state: ServiceState, settings: ServingSettings) -> None:
    metrics = state.metrics

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
            details = clean_errors(exc.errors())
            if any(d["type"] == "json_invalid" for d in details):
                raise ApiError(400, "invalid_json", "request body is not valid JSON",
                               details) from exc
            raise ApiError(422, "validation_error", summary(details), details) from exc
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
                                             ev.event_type not in NEGATIVE_EVENTS,
                                             ev.event_type in NEGATIVE_FEEDBACK))
        try:
            await state.record_events(records)
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
