"""Error answers: one JSON envelope ``{"error": {"status", "code", "message", "details"}}``.

Handlers raise :class:`ApiError`; :func:`install_error_handlers` renders it, FastAPI's own
validation errors and Starlette's HTTP errors in the same envelope, and turns anything
unexpected into a 500 without a stack trace leaving the process.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving_export.service.models import ErrorResponse

logger = logging.getLogger(__name__)

JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)
}
"""The error answers every endpoint documents."""
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 406: "not_acceptable", 413: "body_too_large",
                415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
                503: "unavailable"}
"""The envelope's ``code`` of each HTTP status Starlette raises."""


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


def error_response(status: int, code: str, message: str,
                   details: list | None = None) -> Response:
    return Response(error_body(status, code, message, details), status_code=status,
                    media_type=JSON)


def clean_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's error list reduced to ``loc``, ``msg`` and ``type`` strings."""
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")),
             "type": str(e.get("type"))} for e in errors]


def summary(details: list[dict[str, Any]]) -> str:
    """The first five problems as one line."""
    return "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` in the envelope (never a 500 with a trace)."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = STATUS_CODES.get(exc.status_code, "error")
        status = exc.status_code if exc.status_code < 500 else 503
        return error_response(status, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        details = clean_errors(list(exc.errors()))
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(400, "invalid_json", "request body is not valid JSON",
                                  details)
        return error_response(422, "validation_error", summary(details), details)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        logger.error("unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return error_response(500, "internal_error", "internal error")
