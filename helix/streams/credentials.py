"""Who is streaming (the request's principal, or one from a token that is not in a header),
and whether they may open a scope.

EventSource cannot send headers, so stream endpoints also accept `?access_token=<stream
token>`; only short-lived stream tokens are taken from the URL (URLs end up in logs). A
WebSocket may authenticate with a first `auth` message carrying any credential Helix accepts
in a header: an API key, a JWT (own or external), or a stream token.

A stream stays authorized only while its credentials hold: `watch_credentials` registers it with
the tailer's revocations, which close it when its key is revoked or its user disabled or given
another role; a stream opened with a stream token ends when the token expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import attrs
from aiohttp import web

from helix.access import PROJECT_OWNERS, Viewer, may_see_owned
from helix.appkeys import ACCOUNTS, SETTINGS, VERIFIER
from helix.auth.identify import identify
from helix.auth.principal import PRINCIPAL, Principal
from helix.domain.user.scopes import EVENTS_READ
from helix.errors import NotFound, Unauthorized
from helix.streams import revocation, tokens
from helix.streams.filters import Scope, ScopeKind
from helix.streams.revocation import Revoked, Watch
from helix.streams.sql import QUERIES
from helix.streams.tailer import Tailer


def viewer_of(principal: Principal) -> Viewer:
    return Viewer(user_id=str(principal.user_id), sees_everything=principal.sees_everything)


async def stream_principal(request: web.Request) -> Principal:
    """The caller of a stream endpoint: from the headers (the auth middleware), else from a
    stream token in `access_token`; 401 if neither."""
    found = request.get(PRINCIPAL)
    if isinstance(found, Principal):
        found.require_scope(EVENTS_READ)
        return found
    token = request.query.get("access_token")
    if token:
        principal = await from_stream_token(request.app, token)
        principal.require_scope(EVENTS_READ)
        request[PRINCIPAL] = principal  # for the stream's credential watch, as from a header
        return principal
    raise Unauthorized("authentication required (a header, or ?access_token=<stream token>)")


async def from_stream_token(app: web.Application, token: str) -> Principal:
    """The principal of a stream token: its user as of now, restricted to (and ending with)
    the credential it was minted with."""
    user_id, expires_at, carried = tokens.verify_carried(
        app[VERIFIER].own_secret, app[SETTINGS], token
    )
    return attrs.evolve(
        await _principal_of(app, user_id),
        expires_at=expires_at,
        stream_token=True,
        scopes=None if carried.scopes is None else frozenset(carried.scopes),
        key_id=carried.key_id,
        token_id=carried.token_id,
        issued_at=carried.issued_at,
    )


def carried_by(principal: Principal) -> tokens.Carried:
    """What a stream token minted by `principal` carries of its credential."""
    return tokens.Carried(
        scopes=None if principal.scopes is None else tuple(principal.scopes),
        key_id=principal.key_id,
        token_id=principal.token_id,
        issued_at=principal.issued_at,
    )


async def from_any_token(request: web.Request, token: str) -> Principal:
    """A principal from a credential sent in a message rather than a header."""
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise Unauthorized("the token is empty")
    if tokens.is_stream_token(token, request.app[SETTINGS]):
        found = await from_stream_token(request.app, token)
    else:
        # The same checks as a header (API key, own or external JWT), through the same code.
        identified = await identify(request.clone(headers={"Authorization": f"Bearer {token}"}))
        if identified is None:
            raise Unauthorized("authentication required")
        found = identified
    found.require_scope(EVENTS_READ)
    return found


async def _principal_of(app: web.Application, user_id: uuid.UUID) -> Principal:
    try:
        user = await app[ACCOUNTS].get(user_id)
    except NotFound:
        raise Unauthorized("the token names no Helix user") from None
    if user.disabled:
        raise Unauthorized("the user is disabled")
    return Principal(user_id=user.user_id, username=user.username, role=user.role)


async def check_scope(pool: asyncpg.Pool, scope: Scope, viewer: Viewer) -> None:
    """404 unless the job or project exists and the viewer may see it (another user's is
    reported as missing, so its existence is not revealed)."""
    if scope.kind is ScopeKind.ALL:
        return
    if scope.kind is ScopeKind.JOB:
        row = await pool.fetchrow(QUERIES["job_owner"], scope.id)
        owner = row["owner"] if row is not None else None
    else:
        rows = await pool.fetch(PROJECT_OWNERS, [scope.id])
        owner = rows[0]["owner"] if rows else None
    if not may_see_owned(viewer, owner):
        raise NotFound(f"{scope.kind} not found", **{f"{scope.kind}_id": str(scope.id)})


async def watch_credentials(
    tailer: Tailer, principal: Principal, on_revoked: Callable[[Revoked], None]
) -> Watch:
    """Have `on_revoked` called when the principal's credentials stop holding (or expire); 401
    (403 for a changed role) if they already have since the caller authenticated."""
    found = tailer.revocations.watch(principal, on_revoked)
    try:
        revoked = await revocation.check(tailer.store.pool, principal)
    except BaseException:
        found.cancel()
        raise
    if revoked is not None:
        found.cancel()
        raise revoked.error()
    if principal.expires_at is not None:
        found.expire_at(principal.expires_at)
    return found
