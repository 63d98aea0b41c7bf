"""The aiohttp application: keys, middlewares and every resource's route table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from helix.api import (
    audit,
    auth,
    dashboard,
    discussion,
    events,
    health,
    jobs,
    metrics,
    openapi,
    projects,
    streams,
    users,
    webhooks,
    workers,
)
from helix.api.cors import add_cors_headers, cors_middleware
from helix.api.errors import errors_middleware
from helix.api.handlers import uuid_ids
from helix.api.health import SUPERVISOR
from helix.api.idempotency import idempotency_middleware, purge_expired_keys
from helix.api.metrics import METRICS, Metrics
from helix.api.middleware import (
    access_middleware,
    add_common_headers,
    body_limit_middleware,
    client_address_middleware,
    query_text_middleware,
    request_id_middleware,
)
from helix.api.ratelimit import LIMITER, RateLimits
from helix.appkeys import (
    ACCOUNTS,
    ENDPOINTS,
    POOL,
    SEALER,
    SERVICES,
    SETTINGS,
    STORE,
    VERIFIER,
)
from helix.bootstrap import Components, LogNode
from helix.config import Settings

log = logging.getLogger(__name__)


def create_app(
    node: LogNode, settings: Settings, components: Components | None = None
) -> web.Application:
    """The API over a started LogNode, serving with `components` (the process's own, built
    once by the caller; without them the app builds its own as it starts and closes them as it
    stops). Middlewares, outermost first: request id, CORS preflights, client address, access
    log and metrics, error envelope, authentication and rate limit, query text, body size limit,
    idempotency."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            request_id_middleware,
            cors_middleware,
            client_address_middleware,
            access_middleware,
            errors_middleware,
            auth.auth_middleware,
            query_text_middleware,
            body_limit_middleware,
            idempotency_middleware,
        ],
    )
    _install_node(app, node, settings)
    app[LIMITER] = RateLimits.from_settings(settings)
    app[openapi.DOCUMENT] = {}
    app.on_response_prepare.append(add_cors_headers)
    if components is not None:
        _install(app, components)
    else:
        app.cleanup_ctx.append(_own_components(node, settings))
    app.cleanup_ctx.append(purge_expired_keys)
    # streams before events: /events/stream is not /events/{position}
    resources = (
        health,
        metrics,
        openapi,
        auth,
        users,
        projects,
        discussion,
        jobs,
        streams,
        events,
        audit,
        webhooks,
        workers,
        dashboard,
    )
    for module in resources:
        app.add_routes(uuid_ids(module.routes))
    streams.install(app)
    return app


def create_probe_app(node: LogNode, settings: Settings) -> web.Application:
    """What a node without the API role serves on its port: `/healthz`, `/readyz` and
    `/metrics`, the same probes as an API node's, for an orchestrator and a scraper. Any other
    path is a 404 in the error envelope."""
    app = web.Application(middlewares=[request_id_middleware, access_middleware, errors_middleware])
    _install_node(app, node, settings)
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    return app


def _install_node(app: web.Application, node: LogNode, settings: Settings) -> None:
    assert node.pool is not None, "start the LogNode before creating the app"
    app[STORE] = node.store
    app[POOL] = node.pool
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    # The node's roles (and an API app's stream tailer, which joins them) are the ones /readyz
    # and /metrics report.
    app[SUPERVISOR] = node.supervisor
    app.on_response_prepare.append(add_common_headers)


def _install(app: web.Application, components: Components) -> None:
    app[ACCOUNTS] = components.accounts
    app[VERIFIER] = components.verifier
    app[SEALER] = components.sealer
    app[SERVICES] = components.services
    app[ENDPOINTS] = components.endpoints


def _own_components(
    node: LogNode, settings: Settings
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def own(app: web.Application) -> AsyncIterator[None]:
        components = await Components.start(node, settings)
        _install(app, components)
        try:
            yield
        finally:
            await components.stop()

    return own
