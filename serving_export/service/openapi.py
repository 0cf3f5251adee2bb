"""The service's OpenAPI document: parameters of the hand-parsed lookups, and the request
models FastAPI cannot see because those endpoints read their bodies themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serving_export.service.errors import JSON
from serving_export.service.models import MAX_ID, Event, EventBatch, Filters

FILTERS_DOC = (
    "JSON object of serve-time filters, e.g. "
    '`{"include_categories":["Comedy"],"exclude_item_ids":["42"],"available_only":true}`. '
    "Keys: include_categories, exclude_categories, exclude_item_ids, available_only, "
    "exclude_purchased, exclude_recent, blend_similar (schema: `Filters`). "
    "Malformed JSON is a 400, a wrong key or type a 422."
)


def doc_params(max_n: int, default_n: int, *names: str) -> dict[str, Any]:
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


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` add the models of hand-parsed bodies and parameters."""

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
