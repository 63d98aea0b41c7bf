"""What an API key (or a token minted from one) may be used for: the scopes, and the most each
role can grant.

A credential's effective permission is its role's scopes intersected with its own: a key never
does more than its user's role allows, whatever it was created with. Every route of the API
declares the one scope it needs in `helix.api.scopes`.
"""

from __future__ import annotations

from collections.abc import Iterable

from helix.domain.user.events import Role

PROJECTS_READ = "projects:read"
PROJECTS_WRITE = "projects:write"
JOBS_RUN = "jobs:run"
WEBHOOKS_READ = "webhooks:read"
WEBHOOKS_MANAGE = "webhooks:manage"
EVENTS_READ = "events:read"
WORKERS_READ = "workers:read"
WORKERS_RUN = "workers:run"
ACCOUNT = "account"
USERS_ADMIN = "users:admin"
AUDIT_READ = "audit:read"

SCOPES: dict[str, str] = {
    PROJECTS_READ: "read projects, their messages, jobs and output",
    PROJECTS_WRITE: "create, change, discuss and archive projects",
    JOBS_RUN: "execute projects and cancel jobs",
    WEBHOOKS_READ: "read webhook endpoints and their deliveries",
    WEBHOOKS_MANAGE: "create, change, test, replay and delete webhook endpoints",
    EVENTS_READ: "read the event log and open live streams",
    WORKERS_READ: "read the worker registry",
    WORKERS_RUN: "register workers, claim jobs and report on them",
    ACCOUNT: "the caller's own account: profile, password, tokens, API keys, logout",
    USERS_ADMIN: "manage users (admins)",
    AUDIT_READ: "verify the log's hash chain (admins and auditors)",
}

_EVERYTHING = frozenset(SCOPES)
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.ADMIN: _EVERYTHING,
    Role.USER: frozenset(
        {
            PROJECTS_READ,
            PROJECTS_WRITE,
            JOBS_RUN,
            WEBHOOKS_READ,
            WEBHOOKS_MANAGE,
            EVENTS_READ,
            ACCOUNT,
        }
    ),
    Role.WORKER: frozenset({WORKERS_READ, WORKERS_RUN, EVENTS_READ, ACCOUNT}),
    Role.AUDITOR: frozenset(
        {PROJECTS_READ, WEBHOOKS_READ, EVENTS_READ, WORKERS_READ, AUDIT_READ, ACCOUNT}
    ),
}


def effective(role: Role, scopes: Iterable[str] | None) -> frozenset[str]:
    """What a credential of `role` carrying `scopes` (None: no restriction) may do."""
    allowed = ROLE_SCOPES[role]
    return allowed if scopes is None else allowed & frozenset(scopes)
