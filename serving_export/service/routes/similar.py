"""``GET /recommendations/items/{item_id}/similar``: items similar to an item."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving_export.service import answers
from serving_export.service.errors import ERRORS, JSON, ApiError
from serving_export.service.lookups import Lookups, query_args
from serving_export.service.models import SimilarItems
from serving_export.service.openapi import doc_params
from serving_export.service.recommend import similar_items
from serving_export.service.state import ServiceState


def add_routes(router: APIRouter, state: ServiceState, lookups: Lookups) -> None:
    metrics = state.metrics
    path_id, query_n, live, parse_filters = (lookups.path_id, lookups.query_n, lookups.live,
                                             lookups.parse_filters)

    @router.get("/recommendations/items/{item_id}/similar", response_model=SimilarItems,
                responses=ERRORS, tags=["recommendations"],
                openapi_extra=doc_params(lookups.max_n, lookups.default_n, "item_id", "n",
                                         "filters"))
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
        metrics.answers.labels("similar", source).inc()
        if source != "similar":
            metrics.fallbacks.labels("similar", "popular").inc()
        return Response(answers.similar_answer(rel, item_id, source, False, entries),
                        media_type=JSON)
