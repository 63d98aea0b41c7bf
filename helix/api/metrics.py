"""Prometheus metrics: requests by route and status, the log's head and sequencer lag, and
the background roles' states and restarts.

Each application has its own registry, so several apps in one process (tests) do not collide.
Who may read them: the holder of `HELIX_METRICS_TOKEN` when it is set, else loopback peers
only, unless `HELIX_METRICS_PUBLIC` opens them to everyone.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterator

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from helix.api.health import SUPERVISOR
from helix.api.requests import own_credentials, probe
from helix.appkeys import SETTINGS, STORE
from helix.errors import Forbidden, Unauthorized
from helix.eventstore import sequencer_lag
from helix.supervisor import STATES, Supervisor


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
        # Set at each scrape from the app's supervisor, read by the role collector.
        self.supervisor: Supervisor | None = None
        self.registry.register(_RoleCollector(self))


class _RoleCollector(Collector):
    """Each supervised role's state (1 for the state it is in) and its restarts so far."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "helix_role_state", "Background role state (1: the one it is in)",
            labels=["role", "state"],
        )  # fmt: skip
        restarts = CounterMetricFamily(
            "helix_role_restarts", "Background role restarts after an error", labels=["role"]
        )
        supervisor = self.metrics.supervisor
        for name, role in sorted(supervisor.roles.items()) if supervisor else ():
            for state in STATES:
                states.add_metric([name, state], 1.0 if role.state == state else 0.0)
            restarts.add_metric([name], role.restarts)
        yield states
        yield restarts


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


def _peer_is_loopback(request: web.Request) -> bool:
    """Whether the TCP peer itself is on a loopback address. Never a forwarding header: anyone
    can send one."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def authorize_scrape(request: web.Request) -> None:
    settings = request.app[SETTINGS]
    if settings.metrics_token is not None:
        scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
        expected = settings.metrics_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected
        ):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <HELIX_METRICS_TOKEN>'")
        return
    if settings.metrics_public:
        return
    if not _peer_is_loopback(request):
        raise Forbidden(
            "/metrics is served only to loopback peers; set HELIX_METRICS_TOKEN to let a "
            "scraper elsewhere read it (or HELIX_METRICS_PUBLIC=true to let anyone)",
            rule="loopback",
        )
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        # A proxy on this host makes every caller look local.
        raise Forbidden(
            "/metrics is not served through a proxy without HELIX_METRICS_TOKEN",
            rule="loopback",
        )


@routes.get("/metrics")
@probe
@own_credentials
async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus metrics in the text exposition format (HELIX_METRICS_TOKEN, loopback or
    public: see the README)."""
    authorize_scrape(request)
    metrics = request.app[METRICS]
    store = request.app[STORE]
    metrics.head.set(await store.head())
    lag, pending = await sequencer_lag(store.pool)
    metrics.lag.set(lag)
    metrics.pending.set(pending)
    metrics.supervisor = request.app.get(SUPERVISOR)
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
