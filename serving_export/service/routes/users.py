"""``GET /recommendations/users/{user_id}``: a user's list, adjusted at serve time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving_export.service import answers
from serving_export.service.errors import ERRORS, JSON
from serving_export.service.lookups import Lookups, query_args
from serving_export.service.models import UserRecommendations
from serving_export.service.openapi import doc_params
from serving_export.service.realtime import Recent, StoreUnavailable
from serving_export.service.recommend import recommend_user
from serving_export.service.state import ServiceState


def add_routes(router: APIRouter, state: ServiceState, lookups: Lookups) -> None:
    metrics = state.metrics
    path_id, query_n, live = lookups.path_id, lookups.query_n, lookups.live
    check_surface, parse_filters = lookups.check_surface, lookups.parse_filters

    @router.get("/recommendations/users/{user_id}", response_model=UserRecommendations,
                responses=ERRORS, tags=["recommendations"],
                openapi_extra=doc_params(lookups.max_n, lookups.default_n, "user_id",
                                         "surface", "n", "filters"))
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
        metrics.answers.labels("user", source).inc()
        if source == "popular":
            metrics.fallbacks.labels("user", "cold_user").inc()
        elif backfilled:
            metrics.fallbacks.labels("user", "backfill").inc()
        return Response(answers.user_answer(rel, user_id, surface, source, degraded, entries),
                        media_type=JSON)
