"""Authentication: the middleware (who is calling, their rate limit) and the auth routes.

Every route needs credentials unless its handler is marked `@public`. Credentials that are
present but fail validation are a 401 even on a public route: a bad token is never anonymous.
Probes (`@probe`: health, readiness, metrics) are the exception: their credentials are not
looked up and they are never rate limited.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.api.handlers import (
    caller,
    documented,
    listing,
    optional_body,
    position,
    reply,
    validated_body,
)
from helix.api.idempotency import checked_first
from helix.api.ratelimit import LIMITER, VERDICT
from helix.api.requests import (
    flag_query,
    has_own_credentials,
    is_probe,
    is_public,
    public,
    query_params,
)
from helix.api.scopes import require_route_scope
from helix.api.validation import RequestSchema, object_body
from helix.appkeys import ACCOUNTS, VERIFIER
from helix.auth.identify import identify
from helix.auth.principal import (
    PRINCIPAL,
    Principal,
    anonymous_caller,
    client_address,
    principal_of,
    require_role,
)
from helix.auth.records import UserRecord
from helix.auth.tokens import issue_token
from helix.domain.user import MAX_KEY_NAME_CHARS, Role
from helix.domain.user.scopes import SCOPES, USERS_ADMIN
from helix.envelope import rfc3339
from helix.errors import Forbidden, RateLimited, Unauthorized, ValidationError
from helix.inputs import parse_time

routes = web.RouteTableDef()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limits = request.app[LIMITER]
    if is_probe(request.match_info.handler):
        # Probes answer without the database and are never refused for the caller's rate.
        limiter, key = limits.bucket(None, client_address(request))
        request[VERDICT] = limiter.peek(key)
        return await handler(request)
    failure: Unauthorized | None = None
    principal: Principal | None = None
    try:
        if not has_own_credentials(request.match_info.handler):
            principal = await identify(request)
    except Unauthorized as exc:
        failure = exc
    if principal is not None:
        request[PRINCIPAL] = principal
    # Charged before rejecting bad credentials, so guessing is rate limited too.
    limiter, key = limits.bucket(principal.user_id if principal else None, client_address(request))
    verdict = limiter.take(key)
    request[VERDICT] = verdict
    if not verdict.allowed:
        raise RateLimited(
            "too many requests; slow down",
            limit=verdict.limit,
            retry_after_seconds=verdict.retry_after,
        )
    if failure is not None:
        raise failure
    unmatched = request.match_info.http_exception is not None
    if principal is None and not unmatched and not is_public(request.match_info.handler):
        raise Unauthorized("authentication required")
    if principal is not None and not unmatched:
        require_route_scope(request, principal)
    return await handler(request)


def token_response(
    request: web.Request, user: UserRecord, scopes: Iterable[str] | None = None
) -> web.Response:
    """The one login view: a JWT for `user` (restricted to `scopes`, those of the credential it
    is minted with), when it expires, and the user, with `roles` as a list."""
    verifier = request.app[VERIFIER]
    token, expires = issue_token(
        verifier.own_secret,
        verifier.settings,
        user_id=user.user_id,
        username=user.username,
        role=user.role.value,
        scopes=scopes,
    )
    return web.json_response(
        {
            "token": token,
            "token_type": "Bearer",
            "expires_at": rfc3339(expires),
            "expires_in": verifier.settings.jwt_ttl_seconds,
            # `roles` beside `role`, as the HelixCode seed reads it: a user has one role.
            "user": {**user.to_json(), "roles": [user.role.value]},
        }
    )


LOGIN_BODY = RequestSchema(
    {
        "type": "object",
        "required": ["username", "password"],
        "additionalProperties": False,
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    }
)


@routes.post("/api/v1/auth/login")
@public
@checked_first
@documented(LOGIN_BODY, _200="the JWT, its lifetime and the user")
async def login(request: web.Request) -> web.Response:
    """Exchange a username and password for a JWT."""
    body = await validated_body(request, LOGIN_BODY)
    user = await request.app[ACCOUNTS].login(
        body["username"], body["password"], caller=anonymous_caller(request)
    )
    return token_response(request, user)


@routes.post("/api/v1/auth/token")
async def refresh_token(request: web.Request) -> web.Response:
    """A fresh JWT for the caller (with a key or a still-valid token), with no more scopes
    than the credential it is asked with."""
    principal = principal_of(request)
    user = await request.app[ACCOUNTS].get(principal.user_id)
    return token_response(request, user, principal.scopes)


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """Revoke the JWT this request presents (`user.token_revoked`): it is refused from now on,
    and the streams opened with it close. An API key is revoked with DELETE api-keys/{id}."""
    principal = principal_of(request)
    if not principal.token_id:
        raise Forbidden(
            "logout ends a JWT; revoke an API key with DELETE /api/v1/auth/api-keys/{key_id}"
        )
    # Kept until the token's own `exp` (Helix's tokens always have one: it is required).
    expires_at = request.app[VERIFIER].verify(_bearer(request)).expires_at
    if expires_at is None:
        raise Unauthorized("the token has no expiry")
    await request.app[ACCOUNTS].revoke_token(
        principal.user_id, principal.token_id, expires_at, caller=caller(request, roles=Role)
    )
    return web.Response(status=204)


def _bearer(request: web.Request) -> str:
    return request.headers["Authorization"].strip().partition(" ")[2].strip()


def _target_user(request: web.Request, principal: Principal, raw: object) -> uuid.UUID:
    """The user a key request is about: oneself, or (admins only) anyone."""
    if raw is None:
        return principal.user_id
    try:
        user_id = uuid.UUID(str(raw))
    except ValueError:
        raise ValidationError("'user_id' must be a UUID", field="user_id") from None
    if user_id != principal.user_id:
        require_role(request, Role.ADMIN)
        principal.require_scope(USERS_ADMIN)
    return user_id


CREATE_API_KEY_BODY = object_body(
    {
        "name": {"type": "string", "maxLength": MAX_KEY_NAME_CHARS},
        "user_id": {"type": "string", "format": "uuid", "description": "admins only"},
        "scopes": {
            "type": "array",
            "items": {"type": "string", "enum": sorted(SCOPES)},
            "description": "what the key may do (default: all its user's role allows); a "
            "scope the role does not grant is refused",
        },
        "expires_at": {
            "type": "string",
            "format": "date-time",
            "description": "when the key stops working (default: never); in the future",
        },
    }
)


@routes.post("/api/v1/auth/api-keys")
@documented(
    CREATE_API_KEY_BODY, body_required=False, _201="the key's record and the key, shown once"
)
async def create_api_key(request: web.Request) -> web.Response:
    """Create an API key; the key itself is in this response only."""
    principal = principal_of(request)
    body = await optional_body(request, CREATE_API_KEY_BODY)
    name = body.get("name") or "api key"
    user_id = _target_user(request, principal, body.get("user_id"))
    scopes = body.get("scopes")
    if user_id == principal.user_id and principal.scopes is not None:
        # A key made with a scoped credential: no more than that credential (the role's
        # limit is the decider's).
        if scopes is None:
            scopes = sorted(principal.effective_scopes)
        beyond = sorted(set(scopes) - principal.effective_scopes)
        if beyond:
            raise ValidationError(
                f"the credentials of this request do not have: {', '.join(beyond)}",
                field="scopes",
            )
    expires_at = None
    if body.get("expires_at") is not None:
        expires_at = parse_time(body["expires_at"], "expires_at")
    record, key = await request.app[ACCOUNTS].create_key(
        user_id, name, scopes=scopes, expires_at=expires_at, caller=caller(request, roles=Role)
    )
    return reply({**record.to_json(), "key": key}, status=201, at=position(request))


@routes.get("/api/v1/auth/api-keys")
@query_params("user_id", "include_revoked")
async def list_api_keys(request: web.Request) -> web.Response:
    """List the caller's API keys by prefix, with their last use."""
    principal = principal_of(request)
    user_id = _target_user(request, principal, request.query.get("user_id"))
    include_revoked = bool(flag_query(request, "include_revoked"))
    at = position(request)  # the api_keys read model is inline: the head before the read
    found = await request.app[ACCOUNTS].list_keys(user_id, include_revoked=include_revoked)
    return reply(listing(request, [k.to_json() for k in found], more=False), at=at)


@routes.delete("/api/v1/auth/api-keys/{key_id}")
async def revoke_api_key(request: web.Request) -> web.Response:
    """Revoke an API key (admins may revoke anyone's)."""
    principal = principal_of(request)
    try:
        key_id = uuid.UUID(request.match_info["key_id"])
    except ValueError:
        raise ValidationError("the key id must be a UUID", field="key_id") from None
    owner = None if principal.role is Role.ADMIN else principal.user_id
    at = position(request)
    record = await request.app[ACCOUNTS].revoke_key(
        key_id, owner=owner, caller=caller(request, roles=Role)
    )
    return reply(record.to_json(), at=at)
