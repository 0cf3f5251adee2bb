"""``POST /recommendations/batch`` (many users, e.g. an email campaign) and
``POST /recommendations/rerank`` (a user's order over given items, e.g. search results)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import Response

from conf.serving import ServingSettings
from serving_export.service import answers
from serving_export.service.errors import ERRORS, JSON, ApiError
from serving_export.service.lookups import Lookups
from serving_export.service.models import (
    BatchRequest,
    BatchResponse,
    RerankRequest,
    RerankResponse,
)
from serving_export.service.realtime import Recent, StoreUnavailable
from serving_export.service.recommend import recommend_user
from serving_export.service.rerank import rerank
from serving_export.service.state import ServiceState

YIELD_EVERY = 8
"""Users answered between two yields to the event loop: a batch of 1,000 users takes tens of
milliseconds, which single lookups queued behind it would otherwise wait for whole."""


def add_routes(app: FastAPI, state: ServiceState, lookups: Lookups,
               settings: ServingSettings) -> None:
    metrics = state.metrics

    @app.post("/recommendations/batch", response_model=BatchResponse, responses=ERRORS,
              tags=["recommendations"])
    async def batch(body: BatchRequest) -> Response:
        """Recommendations for up to ``max_batch_users`` users (e.g. an email campaign)."""
        rel = lookups.live()
        if len(body.user_ids) > settings.max_batch_users:
            raise ApiError(422, "too_many_users", f"{len(body.user_ids)} users; at most "
                           f"{settings.max_batch_users} per request")
        if body.n > lookups.max_n:
            raise ApiError(422, "validation_error",
                           f"n={body.n} out of range 1-{lookups.max_n}")
        lookups.check_surface(rel, body.surface)
        degraded = False
        try:
            recents: list[Recent | None] = list(await state.store.recent_many(body.user_ids))
        except StoreUnavailable:
            recents = [None] * len(body.user_ids)
            degraded = True
            metrics.degraded.labels("batch").inc()
        results = []
        sources: dict[str, int] = {}
        for k, (user_id, recent) in enumerate(zip(body.user_ids, recents, strict=True)):
            if k and k % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let waiting lookups run between slices of a batch
            source, entries, _ = recommend_user(rel, body.surface, user_id, body.n,
                                                body.filters, recent, state.blend)
            sources[source] = sources.get(source, 0) + 1
            results.append(answers.user_answer(rel, user_id, body.surface, source, degraded,
                                               entries))
        for source, count in sources.items():
            metrics.answers.labels("batch", source).inc(count)
        if sources.get("popular"):
            metrics.fallbacks.labels("batch", "cold_user").inc(sources["popular"])
        return Response(answers.batch_answer(rel, degraded, results), media_type=JSON)

    @app.post("/recommendations/rerank", response_model=RerankResponse, responses=ERRORS,
              tags=["recommendations"])
    async def rerank_items(body: RerankRequest) -> Response:
        """Order candidate items (e.g. search results) by the user's embedding."""
        rel = lookups.live()
        if len(body.item_ids) > settings.max_rerank_items:
            raise ApiError(422, "too_many_items", f"{len(body.item_ids)} items; at most "
                           f"{settings.max_rerank_items} per request")
        source, rows = rerank(rel, body.user_id, body.item_ids)
        metrics.answers.labels("rerank", source).inc()
        if source != "reranked":
            metrics.fallbacks.labels("rerank", "popular").inc()
        return Response(answers.rerank_answer(rel, body.user_id, source, False, rows),
                        media_type=JSON)
