"""Prometheus metrics: requests by route and status; the log's head and how far behind it
each consumer is (sequencer, projections, webhook dispatcher), the claim queue, webhook
deliveries by outcome and jobs by status (`helix.health.log_gauges`, a few aggregate queries at
each scrape); this node's stream subscribers; the background roles' states and restarts.

Each application has its own registry, so several apps in one process (tests) do not collide.
Who may read them: the holder of `HELIX_METRICS_TOKEN` when it is set, else loopback peers
only, unless `HELIX_METRICS_PUBLIC` opens them to everyone.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from helix.api.health import SUPERVISOR
from helix.api.requests import own_credentials, probe
from helix.api.streams import TAILER
from helix.appkeys import POOL, SETTINGS
from helix.database import database_unavailable
from helix.errors import Forbidden, Unauthorized
from helix.health import LogGauges, log_gauges
from helix.supervisor import STATES, Supervisor

log = logging.getLogger(__name__)


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
        # Set at each scrape (the app's supervisor, the log's gauges, the tailer's subscribers),
        # read by the collectors.
        self.supervisor: Supervisor | None = None
        self.gauges: LogGauges | None = None
        self.subscribers: dict[str, int] = {}
        self.registry.register(_RoleCollector(self))
        self.registry.register(_LogCollector(self))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _by(name: str, documentation: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class _LogCollector(Collector):
    """The log's gauges and this node's stream subscribers, as read at the scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        g = self.metrics.gauges
        if g is not None:
            yield _gauge(
                "helix_eventstore_head_position", "Position of the newest sequenced event", g.head
            )
            yield _gauge(
                "helix_sequencer_lag_seconds",
                "Age of the oldest committed event still without a position",
                g.sequencer_lag_seconds,
            )
            yield _gauge(
                "helix_sequencer_pending_events",
                "Committed events waiting for a position",
                g.sequencer_pending,
            )
            yield _by(
                "helix_projection_lag_events",
                "Events between the head and a read model's checkpoint",
                "projection",
                g.projection_lag,
            )
            yield _gauge(
                "helix_webhook_dispatcher_backlog_events",
                "Positioned events the webhook dispatcher has not yet fanned out to deliveries",
                g.dispatcher_backlog,
            )
            yield _by(
                "helix_webhook_deliveries",
                "Webhook deliveries by outcome (failed: pending a retry after failed attempts)",
                "outcome",
                g.deliveries,
            )
            yield _gauge(
                "helix_jobs_claimable",
                "Queued jobs a worker could claim now (due, not cancelling, project not paused)",
                g.claimable_jobs,
            )
            yield _by("helix_jobs", "Jobs by status", "status", g.jobs)
        yield _by(
            "helix_stream_subscriptions",
            "Open live stream subscriptions on this node, by transport",
            "transport",
            self.metrics.subscribers,
        )


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


def observe(request: web.Request, status: int, seconds: float) -> None:
    """Count a handled request and its latency under its route's template."""
    labels = (request.method, route_label(request), str(status))
    metrics = request.app[METRICS]
    metrics.requests.labels(*labels).inc()
    metrics.latency.labels(*labels).observe(seconds)


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
    try:
        metrics.gauges = await log_gauges(request.app[POOL])
    except Exception as exc:
        if database_unavailable(exc):
            raise  # a 503, like every route's
        # The roles' states matter most when something is broken: they are still shown.
        log.warning("the log's gauges could not be read: %s: %s", type(exc).__name__, exc)
        metrics.gauges = None
    tailer = request.app.get(TAILER)
    metrics.subscribers = tailer.subscribers() if tailer is not None else {}
    metrics.supervisor = request.app.get(SUPERVISOR)
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
