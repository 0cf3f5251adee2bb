"""Reading a request on the lookup path: the query string, ids, ``n``, filters, the live
release. The GET lookups parse their requests here by hand (see :class:`DirectRoute`)."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from conf.serving import ServingSettings
from serving_export.release.reader import Release
from serving_export.service.errors import ApiError, clean_errors, summary
from serving_export.service.models import ID_PATTERN, MAX_ID, Filters
from serving_export.service.state import ServiceState


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


class Lookups:
    """The request checks every lookup shares, bound to one service's state and settings."""

    def __init__(self, state: ServiceState, settings: ServingSettings):
        self.state = state
        self.max_n = settings.max_n
        self.default_n = min(settings.default_n, settings.max_n)
        self._id_re = re.compile(ID_PATTERN)

    def live(self) -> Release:
        """The loaded release (503 while there is none)."""
        rel = self.state.release
        if rel is None:
            raise ApiError(503, "no_release", "no verified release is loaded yet")
        return rel

    @staticmethod
    def check_surface(rel: Release, surface: str) -> None:
        if surface not in rel.surfaces:
            raise ApiError(422, "unknown_surface",
                           f"unknown surface {surface!r}; this release serves "
                           f"{list(rel.surfaces)}")

    @staticmethod
    def parse_filters(raw: str | None) -> Filters | None:
        """The ``filters`` query parameter (JSON) as :class:`Filters`; 400 or 422 if bad."""
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
            details = clean_errors(exc.errors())
            raise ApiError(422, "invalid_filters", summary(details), details) from exc

    def path_id(self, request: Request, name: str) -> str:
        value = request.path_params[name]
        if not 0 < len(value) <= MAX_ID or not self._id_re.match(value):
            raise ApiError(422, "validation_error", f"{name}: must be 1-{MAX_ID} characters "
                           "without control characters",
                           [{"loc": ["path", name], "msg": "invalid id", "type": "value_error"}])
        return value

    def query_n(self, query: dict[str, str]) -> int:
        raw = query.get("n")
        if raw is None:
            return self.default_n
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if not 1 <= n <= self.max_n:
            raise ApiError(422, "validation_error", f"n: must be an integer from 1 to "
                           f"{self.max_n}, got {raw[:20]!r}",
                           [{"loc": ["query", "n"], "msg": "out of range",
                             "type": "value_error"}])
        return n
