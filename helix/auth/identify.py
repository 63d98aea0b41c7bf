"""Who is calling: the principal that a request's credentials (a JWT or an API key) name."""

from __future__ import annotations

import uuid

from aiohttp import web

from helix.appkeys import ACCOUNTS, VERIFIER
from helix.auth import keys
from helix.auth.principal import Principal, anonymous_caller
from helix.auth.records import UserRecord
from helix.errors import NotFound, Unauthorized


def _principal(user: UserRecord, key_id: uuid.UUID | None = None) -> Principal:
    return Principal(user_id=user.user_id, username=user.username, role=user.role, key_id=key_id)


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


async def identify(request: web.Request) -> Principal | None:
    found = _credentials(request)
    if found is None:
        return None
    kind, token = found
    accounts = request.app[ACCOUNTS]
    if kind == "key":
        if not keys.looks_like_key(token):
            raise Unauthorized("the API key is not valid")
        user, key_id = await accounts.authenticate_key(token)
        return _principal(user, key_id)
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
    return _principal(user)
