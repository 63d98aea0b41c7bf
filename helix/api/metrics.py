"""Prometheus metrics: requests by route and status, and the log's head and sequencer lag.

Each application has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from helix.api.keys import STORE
from helix.api.requests import public
from helix.eventstore import sequencer_lag


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "helix_http_requests_total", "HTTP requests handled", labels, registry=self.registry
        )
        self.latency = Histogram(
            "helix_http_request_duration_seconds",
            "Time to handle an HTTP request",
            labels,
            registry=self.registry,
        )
        self.head = Gauge(
            "helix_eventstore_head_position",
            "Position of the newest sequenced event",
            registry=self.registry,
        )
        self.lag = Gauge(
            "helix_sequencer_lag_seconds",
            "Age of the oldest committed event still without a position",
            registry=self.registry,
        )
        self.pending = Gauge(
            "helix_sequencer_pending_events",
            "Committed events waiting for a position",
            registry=self.registry,
        )


METRICS = web.AppKey("metrics", Metrics)
routes = web.RouteTableDef()


def route_label(request: web.Request) -> str:
    """The route's template (`/api/v1/users/{user_id}`), never the raw path: bounded labels."""
    resource = request.match_info.route.resource
    if request.match_info.http_exception is not None or resource is None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        labels = (request.method, route_label(request), str(status))
        metrics = request.app[METRICS]
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(time.perf_counter() - started)


@routes.get("/metrics")
@public
async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus metrics in the text exposition format."""
    metrics = request.app[METRICS]
    store = request.app[STORE]
    metrics.head.set(await store.head())
    lag, pending = await sequencer_lag(store.pool)
    metrics.lag.set(lag)
    metrics.pending.set(pending)
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
