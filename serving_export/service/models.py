"""Request and response models of the lookup service (they make the OpenAPI schema).

Ids are 1-128 characters without control characters. Hot-path answers are serialised by
hand (see :mod:`serving_export.service.answers`) to exactly these shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_ID = 128
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=ID_PATTERN)]
EventType = Literal["view", "click", "add_to_cart", "purchase", "rating", "skip", "hide",
                    "not_interested", "dislike"]
Source = Literal["personalized", "ann", "popular", "similar", "reranked"]


class Filters(BaseModel):
    """Serve-time filters, passed as a JSON object (query parameter ``filters`` or a body
    field). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    include_categories: list[Name] | None = Field(
        None, max_length=100, description="Keep only items in at least one of these categories.")
    exclude_categories: list[Name] | None = Field(
        None, max_length=100, description="Drop items in any of these categories.")
    exclude_item_ids: list[Id] | None = Field(
        None, max_length=1000, description="Drop these items (e.g. already shown).")
    available_only: bool = Field(True, description="Drop items marked unavailable.")
    exclude_purchased: bool = Field(True, description="Drop items the user already bought.")
    exclude_recent: bool = Field(
        True, description="Drop items the user interacted with recently (real-time store).")
    blend_similar: bool = Field(
        True, description="Blend in items similar to the user's last interactions.")


class Item(BaseModel):
    """One recommended item."""

    item_id: str
    score: float | None = Field(description="Model score (personalized), similarity "
                                "(similar) or popularity (popular); null if unknown.")
    source: Source = Field(description="Where this item came from: ``personalized`` (the "
                           "user's precomputed list), ``ann`` (nearest items to the user's, or "
                           "the item's, vector in the release's FAISS shards), ``similar`` (a "
                           "precomputed neighbour list), ``popular``, ``reranked``.")
    retrieval: list[str] | None = Field(
        None, description="Retrieval strategies that found it (personalized items).")
    reason: str = Field(description="Why it is there, in words an app can show: e.g. "
                        "\"similar to Toy Story\", \"popular with people like you\".")
    known: bool | None = Field(None, description="Rerank only: false when the release has "
                               "no vector for the item (it is placed last).")


class UserRecommendations(BaseModel):
    """``GET /recommendations/users/{user_id}``."""

    user_id: str
    surface: str
    release_id: str
    source: Source = Field(description="``personalized`` when the user has a precomputed "
                           "list for the surface; else ``ann`` when the release holds the "
                           "user's vector (nearest items in its FAISS shards); else "
                           "``popular`` (unknown or cold users).")
    degraded: bool = Field(description="True when the real-time store was unavailable.")
    items: list[Item]


class SimilarItems(BaseModel):
    """``GET /recommendations/items/{item_id}/similar``."""

    item_id: str
    release_id: str
    source: Source = Field(description="``similar`` (the item's precomputed neighbour list), "
                           "``ann`` (no list: nearest items to its collaborative or "
                           "content-predicted vector in the FAISS shards) or ``popular``.")
    degraded: bool
    items: list[Item]


class BatchRequest(BaseModel):
    """Recommendations for many users at once (e.g. an email campaign)."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[Id] = Field(min_length=1, description="Up to ``max_batch_users`` users.")
    surface: str = "email"
    n: int = Field(20, ge=1, description="Items per user, at most ``max_n``.")
    filters: Filters | None = None


class BatchResponse(BaseModel):
    """``POST /recommendations/batch``: one answer per requested user, in order."""

    release_id: str
    degraded: bool
    results: list[UserRecommendations]


class RerankRequest(BaseModel):
    """Order a user's candidate items (e.g. search results) by the user's taste."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id
    item_ids: list[Id] = Field(min_length=1, description="Up to ``max_rerank_items`` ids; "
                               "duplicates are dropped.")


class RerankResponse(BaseModel):
    """Items ordered by user-item dot product; unknown items last with ``known: false``."""

    user_id: str
    release_id: str
    source: Source = Field(description="``reranked`` for a known user, ``popular`` (items "
                           "ordered by popularity) for an unknown one.")
    degraded: bool
    items: list[Item]


class Event(BaseModel):
    """One interaction."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id | None = Field(None, description="Idempotency key; generated if absent.")
    user_id: Id
    item_id: Id
    event_type: EventType
    value: float | None = Field(None, allow_inf_nan=False,
                                description="Rating (0.5-5) or dwell seconds.")
    ts: datetime | None = Field(None, description="ISO-8601 event time; default: receipt. "
                                "Times without a zone are UTC.")
    surface: Annotated[str, StringConstraints(max_length=64, pattern=ID_PATTERN)] | None = None


class EventBatch(BaseModel):
    """``POST /events/interactions`` body."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, description="Up to ``max_events`` events.")


class EventsAccepted(BaseModel):
    """Events were durably spooled."""

    accepted: int
    event_ids: list[str]
    degraded: bool = Field(description="True when the real-time store was not updated.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {...}}``."""

    status: int
    code: str
    message: str
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    """Error envelope."""

    error: ErrorBody


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: str
    release_id: str | None = None
    load_s: float | None = None
    store: str | None = None
    worker: int | None = Field(None, description="Process id of the worker that answered.")
