"""The scope every route needs, in one table: the auth middleware enforces it for every
request (a credential's effective scopes are its role's intersected with its own), the OpenAPI
document shows it, and a test checks that every route of the router is in the table.

`None` marks the routes anyone may call (login, probes, the OpenAPI document). The stream
routes are public at the HTTP level (a stream token may come in the query) but still need
`events:read`, which their handlers check for a token from the query.
"""

from __future__ import annotations

import re

from aiohttp import web

from helix.api.requests import is_public
from helix.auth.principal import Principal, principal_of
from helix.domain.user.scopes import (
    ACCOUNT,
    AUDIT_READ,
    EVENTS_READ,
    JOBS_RUN,
    PROJECTS_READ,
    PROJECTS_WRITE,
    USERS_ADMIN,
    WEBHOOKS_MANAGE,
    WEBHOOKS_READ,
    WORKERS_READ,
    WORKERS_RUN,
)
from helix.errors import Forbidden

# `{name}` or `{name:regex}` in an aiohttp path, the regex with at most one level of braces (as
# aiohttp allows; the ids' UUID pattern has them).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(?:[^{}]|\{[^{}]*\})*)?\}")

PROJECT = "/api/v1/projects/{project_id}"
WEBHOOK = "/api/v1/webhooks/{endpoint_id}"
USER = "/api/v1/users/{user_id}"

ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/api/v1/openapi.json"): None,
    ("GET", "/"): None,
    ("GET", "/ui/{asset}"): None,
    ("POST", "/api/v1/auth/login"): None,
    ("POST", "/api/v1/auth/token"): ACCOUNT,
    ("POST", "/api/v1/auth/logout"): ACCOUNT,
    ("POST", "/api/v1/auth/api-keys"): ACCOUNT,
    ("GET", "/api/v1/auth/api-keys"): ACCOUNT,
    ("DELETE", "/api/v1/auth/api-keys/{key_id}"): ACCOUNT,
    ("GET", "/api/v1/users/me"): ACCOUNT,
    ("POST", "/api/v1/users/me/password"): ACCOUNT,
    ("GET", "/api/v1/users"): USERS_ADMIN,
    ("POST", "/api/v1/users"): USERS_ADMIN,
    ("GET", USER): USERS_ADMIN,
    ("PATCH", USER): USERS_ADMIN,
    ("PUT", USER + "/password"): USERS_ADMIN,
    ("POST", USER + "/revoke-tokens"): USERS_ADMIN,
    ("POST", "/api/v1/projects"): PROJECTS_WRITE,
    ("GET", "/api/v1/projects"): PROJECTS_READ,
    ("GET", PROJECT): PROJECTS_READ,
    ("PATCH", PROJECT): PROJECTS_WRITE,
    ("DELETE", PROJECT): PROJECTS_WRITE,
    ("POST", PROJECT + "/unarchive"): PROJECTS_WRITE,
    ("POST", PROJECT + "/ready"): PROJECTS_WRITE,
    ("POST", PROJECT + "/execute"): JOBS_RUN,
    # Creates a project and runs it: the handler also needs `jobs:run` (as a message with
    # `"run": true` does; see RUN_SCOPE).
    ("POST", "/api/v1/quick-action"): PROJECTS_WRITE,
    ("POST", PROJECT + "/pause"): JOBS_RUN,
    ("POST", PROJECT + "/resume"): JOBS_RUN,
    ("POST", PROJECT + "/cancel"): JOBS_RUN,
    ("GET", PROJECT + "/status"): PROJECTS_READ,
    ("GET", PROJECT + "/history"): PROJECTS_READ,
    ("POST", "/api/v1/discuss"): PROJECTS_WRITE,
    ("GET", PROJECT + "/messages"): PROJECTS_READ,
    ("POST", PROJECT + "/messages"): PROJECTS_WRITE,
    ("GET", "/api/v1/jobs"): PROJECTS_READ,
    ("GET", "/api/v1/jobs/{job_id}"): PROJECTS_READ,
    ("GET", "/api/v1/jobs/{job_id}/output"): PROJECTS_READ,
    ("GET", "/api/v1/jobs/{job_id}/files"): PROJECTS_READ,
    ("GET", "/api/v1/jobs/{job_id}/files/{path}"): PROJECTS_READ,
    ("POST", "/api/v1/jobs/{job_id}/cancel"): JOBS_RUN,
    ("POST", "/api/v1/jobs/{job_id}/requeue"): JOBS_RUN,
    ("GET", "/api/v1/stream/{job_id}"): EVENTS_READ,
    ("GET", PROJECT + "/stream"): EVENTS_READ,
    ("GET", "/api/v1/events/stream"): EVENTS_READ,
    ("GET", "/api/v1/ws"): EVENTS_READ,
    ("POST", "/api/v1/stream-tokens"): EVENTS_READ,
    ("GET", "/api/v1/events"): EVENTS_READ,
    ("GET", "/api/v1/events/{position}"): EVENTS_READ,
    ("GET", "/api/v1/audit/verify"): AUDIT_READ,
    ("POST", "/api/v1/webhooks"): WEBHOOKS_MANAGE,
    ("GET", "/api/v1/webhooks"): WEBHOOKS_READ,
    ("GET", WEBHOOK): WEBHOOKS_READ,
    ("PATCH", WEBHOOK): WEBHOOKS_MANAGE,
    ("DELETE", WEBHOOK): WEBHOOKS_MANAGE,
    ("POST", WEBHOOK + "/rotate-secret"): WEBHOOKS_MANAGE,
    ("POST", WEBHOOK + "/test"): WEBHOOKS_MANAGE,
    ("POST", WEBHOOK + "/replay"): WEBHOOKS_MANAGE,
    ("POST", WEBHOOK + "/recover"): WEBHOOKS_MANAGE,
    ("GET", WEBHOOK + "/deliveries"): WEBHOOKS_READ,
    ("GET", WEBHOOK + "/deliveries/{delivery_id}"): WEBHOOKS_READ,
    ("POST", WEBHOOK + "/deliveries/{delivery_id}/retry"): WEBHOOKS_MANAGE,
    ("POST", "/api/v1/workers/register"): WORKERS_RUN,
    ("POST", "/api/v1/workers/heartbeat"): WORKERS_RUN,
    ("POST", "/api/v1/workers/{worker_id}/claim"): WORKERS_RUN,
    ("GET", "/api/v1/workers"): WORKERS_READ,
    ("GET", "/api/v1/workers/{worker_id}"): WORKERS_READ,
    ("POST", "/api/v1/jobs/{job_id}/reports"): WORKERS_RUN,
    ("POST", "/api/v1/jobs/{job_id}/release"): WORKERS_RUN,
    ("GET", "/api/v1/jobs/{job_id}/context"): WORKERS_RUN,
    ("PUT", "/api/v1/jobs/{job_id}/files/{path}"): WORKERS_RUN,
}


# What starting a run needs, wherever it starts (execute, quick action, a message with `run`).
RUN_SCOPE = JOBS_RUN


def require_run_scope(request: web.Request) -> None:
    """403 unless the caller may start runs: for the routes that start one besides their own
    scope's work."""
    principal_of(request).require_scope(RUN_SCOPE)


def template(canonical: str) -> str:
    """A route's path as the table (and OpenAPI) names it: `{name}` without its regex."""
    return PLACEHOLDER.sub(r"{\1}", canonical)


def scope_of(method: str, canonical: str, handler: object) -> str | None:
    """The scope a route needs (None: none). A route the table does not declare needs
    nothing if its handler is `@public`, and is refused (403) otherwise, so a route added
    without a scope is closed rather than open."""
    key = ("GET" if method == "HEAD" else method, template(canonical))
    if key in ROUTE_SCOPES:
        return ROUTE_SCOPES[key]
    if is_public(handler):
        return None
    raise Forbidden("this route declares no scope", method=method, path=key[1])


def require_route_scope(request: web.Request, principal: Principal) -> None:
    """403 unless `principal` has the scope the request's route needs."""
    route = request.match_info.route
    if route.resource is None:
        return
    needed = scope_of(request.method, route.resource.canonical, request.match_info.handler)
    if needed is not None:
        principal.require_scope(needed)
