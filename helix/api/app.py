"""The aiohttp application: keys, middlewares and every resource's route table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from helix.api import (
    audit,
    auth,
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
from helix.api.errors import errors_middleware
from helix.api.idempotency import idempotency_middleware, purge_expired_keys
from helix.api.metrics import METRICS, Metrics, metrics_middleware
from helix.api.middleware import (
    add_common_headers,
    body_limit_middleware,
    query_text_middleware,
    request_id_middleware,
)
from helix.api.ratelimit import LIMITER, TokenBuckets
from helix.appkeys import ACCOUNTS, POOL, SEALER, SETTINGS, STORE, VERIFIER
from helix.auth.accounts import Accounts
from helix.auth.sealing import Sealer, new_key
from helix.auth.tokens import TokenVerifier
from helix.bootstrap import LogNode
from helix.config import Settings

log = logging.getLogger(__name__)

JWT_SECRET_NAME = "jwt_signing_secret"
SECRETS_KEY_NAME = "phase_secrets_key"


def create_app(node: LogNode, settings: Settings) -> web.Application:
    """The API over a started LogNode. Middlewares, outermost first: request id, metrics,
    error envelope, authentication and rate limit, query text, body size limit, idempotency."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            errors_middleware,
            auth.auth_middleware,
            query_text_middleware,
            body_limit_middleware,
            idempotency_middleware,
        ],
    )
    assert node.pool is not None, "start the LogNode before creating the app"
    app[STORE] = node.store
    app[POOL] = node.pool
    app[SETTINGS] = settings
    app[ACCOUNTS] = Accounts(node.store)
    app[LIMITER] = TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app[METRICS] = Metrics()
    app[openapi.DOCUMENT] = {}
    app.on_response_prepare.append(add_common_headers)
    app.cleanup_ctx.append(_token_verifier)
    app.cleanup_ctx.append(_sealer)
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
    )
    for module in resources:
        app.add_routes(module.routes)
    streams.install(app)
    workers.install(app, node)
    return app


async def _token_verifier(app: web.Application) -> AsyncIterator[None]:
    """The JWT secret: HELIX_JWT_SECRET, else the one kept in the database for every node."""
    settings = app[SETTINGS]
    secret = settings.jwt_secret or await app[ACCOUNTS].get_or_create_secret(JWT_SECRET_NAME)
    app[VERIFIER] = TokenVerifier(secret, settings)
    yield


async def _sealer(app: web.Application) -> AsyncIterator[None]:
    """The phase secrets keys: HELIX_SECRETS_KEY, else one kept in the database for every node
    (in the form HELIX_SECRETS_KEY takes, so it can be moved out of the database later)."""
    keys = app[SETTINGS].secrets_keys or (
        await app[ACCOUNTS].get_or_create_secret(SECRETS_KEY_NAME, new_key),
    )
    app[SEALER] = Sealer.from_text(keys)
    yield
