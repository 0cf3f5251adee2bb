"""Prometheus metrics of the lookup service, in a registry of their own per app.

Under several workers (``PROMETHEUS_MULTIPROC_DIR`` set, see
:mod:`serving_export.service.server`) every process writes its values to that folder and
:meth:`Metrics.exposition` adds them up: counters and histograms summed over workers, the
release gauges one series per worker (``pid`` label).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ENDPOINTS = ("user", "similar", "batch", "rerank", "events", "healthz", "readyz", "metrics",
             "docs", "other")
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def endpoint_of(path: str) -> str:
    """Metric label of a request path (a fixed, small set)."""
    if path.startswith("/recommendations/users/"):
        return "user"
    if path.startswith("/recommendations/items/"):
        return "similar"
    if path == "/recommendations/batch":
        return "batch"
    if path == "/recommendations/rerank":
        return "rerank"
    if path == "/events/interactions":
        return "events"
    if path in ("/healthz", "/readyz", "/metrics"):
        return path[1:]
    if path.startswith(("/docs", "/openapi", "/redoc")):
        return "docs"
    return "other"


class Metrics:
    """Latency per endpoint, answers by status class, fallbacks, degraded answers, reloads
    and the live release."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram("recpipe_request_seconds", "Request latency (seconds)",
                                 ["endpoint"], buckets=_BUCKETS, registry=r)
        self.responses = Counter("recpipe_responses", "Responses by endpoint and status class",
                                 ["endpoint", "status"], registry=r)
        self.answers = Counter("recpipe_answers", "Recommendation answers by endpoint and "
                               "source (personalized, ann, similar, popular, reranked)",
                               ["endpoint", "source"], registry=r)
        self.fallbacks = Counter("recpipe_fallbacks", "Answers (or parts) served from a "
                                 "fallback list", ["endpoint", "kind"], registry=r)
        self.degraded = Counter("recpipe_degraded_answers", "Answers flagged degraded "
                                "(real-time store unavailable)", ["endpoint"], registry=r)
        self.events = Counter("recpipe_events_accepted", "Events durably spooled",
                              ["event_type"], registry=r)
        self.event_paths = Counter("recpipe_event_paths", "Accepted events by where they "
                                   "were held: kafka, spool (broker unavailable), drained "
                                   "(spool to kafka)", ["path"], registry=r)
        self.reloads = Counter("recpipe_release_reloads", "Releases loaded", registry=r)
        self.reload_failures = Counter("recpipe_release_reload_failures",
                                       "Releases refused at load (kept serving the old one)",
                                       registry=r)
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        mode = {"multiprocess_mode": "liveall"} if self.shared else {}
        self.release = Gauge("recpipe_release_info", "1 for the live release",
                             ["release_id"], registry=r, **mode)
        self.load_seconds = Gauge("recpipe_release_load_seconds",
                                  "Time to verify and map the live release", registry=r,
                                  **mode)
        self._latency = {e: self.latency.labels(e) for e in ENDPOINTS}
        self._responses: dict[tuple[str, str], Counter] = {}
        self._live: str | None = None

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self._latency[endpoint].observe(seconds)
        key = (endpoint, f"{status // 100}xx")
        child = self._responses.get(key)
        if child is None:
            child = self._responses[key] = self.responses.labels(*key)
        child.inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format (every worker's, under several)."""
        if not self.shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def set_release(self, release_id: str, load_s: float) -> None:
        """Mark ``release_id`` live."""
        if self._live is not None:
            if self.shared:  # a value written to the shared folder stays: zero it
                self.release.labels(self._live).set(0)
            else:
                self.release.remove(self._live)
        self.release.labels(release_id).set(1)
        self._live = release_id
        self.load_seconds.set(load_s)
        self.reloads.inc()
