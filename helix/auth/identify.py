"""Who is calling: the principal that a request's credentials (a JWT or an API key) name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import attrs
from aiohttp import web

from helix.appkeys import ACCOUNTS, VERIFIER
from helix.auth import keys
from helix.auth.principal import Principal, anonymous_caller
from helix.auth.records import UserRecord
from helix.errors import NotFound, Unauthorized


def _principal(user: UserRecord) -> Principal:
    return Principal(user_id=user.user_id, username=user.username, role=user.role)


def _credentials(request: web.Request) -> tuple[str, str] | None:
    """("key" | "bearer", token) from the headers, or None when there are none."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        token = _printable(token.strip())
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use 'Authorization: Bearer <token or API key>'")
        return ("key" if token.startswith(keys.KEY_PREFIX) else "bearer"), token
    api_key = request.headers.get("X-API-Key")
    if api_key is not None:
        return "key", _printable(api_key.strip())
    return None


def _printable(token: str) -> str:
    """Tokens and keys are printable ASCII; anything else (undecodable header bytes arrive as
    lone surrogates) is no credential, and must not reach the decoders."""
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("the credentials are not printable ASCII")
    return token


async def identify(request: web.Request, *, now: datetime | None = None) -> Principal | None:
    """The caller the request's credentials name (None: it has none), as of `now`."""
    found = _credentials(request)
    if found is None:
        return None
    kind, token = found
    accounts = request.app[ACCOUNTS]
    if kind == "key":
        if not keys.looks_like_key(token):
            raise Unauthorized("the API key is not valid")
        user, key = await accounts.authenticate_key(
            token, now=now or datetime.now(UTC), caller=anonymous_caller(request)
        )
        return attrs.evolve(
            _principal(user),
            key_id=key.key_id,
            scopes=None if key.scopes is None else frozenset(key.scopes),
            expires_at=key.expires_at,
        )
    claims = request.app[VERIFIER].verify(token)
    if claims.external:
        who = anonymous_caller(request, actor=f"external:{claims.issuer}|{claims.subject}")
        user = await accounts.external_user(claims.issuer, claims.subject, caller=who)
    else:
        try:
            user = await accounts.get(uuid.UUID(claims.subject))
        except (ValueError, NotFound):
            raise Unauthorized("the token names no Helix user") from None
    if user.disabled:
        raise Unauthorized("the user is disabled")
    if claims.external:
        return _principal(user)
    principal = attrs.evolve(
        _principal(user),
        scopes=None if claims.scopes is None else frozenset(claims.scopes),
        token_id=claims.token_id or "",
        issued_at=claims.issued_at,
    )
    if principal.token_ended_by(user.tokens_valid_after) or (
        claims.token_id is not None and await accounts.token_revoked(claims.token_id)
    ):
        raise Unauthorized("the token has been revoked")
    return principal
