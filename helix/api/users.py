"""Users: the caller's own account, and (admins) the list, creation and changes.

The users read model is applied inline, so every answer carries `X-Helix-Position`: the head
taken before the read (see `helix.api.handlers.position`).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from helix.api.auth import token_response
from helix.api.handlers import (
    PAGING,
    caller,
    documented,
    offset_listing,
    position,
    reply,
    strings,
    validated_body,
)
from helix.api.requests import choice_query, int_query, query_params
from helix.api.validation import Setting, object_body
from helix.appkeys import ACCOUNTS
from helix.auth import passwords
from helix.auth.principal import principal_of, require_role
from helix.domain.user import USERNAME_PATTERN, Role
from helix.errors import ValidationError

routes = web.RouteTableDef()
# A new password: its minimum is a setting, which the accounts service enforces as well.
NEW_PASSWORD = {
    "type": "string",
    "minLength": Setting("password_min_length"),
    "maxLength": passwords.MAX_LENGTH,
}
ROLES = [r.value for r in Role]


def _user_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["user_id"])
    except ValueError:
        raise ValidationError("the user id must be a UUID", field="user_id") from None


@routes.get("/api/v1/users/me")
async def me(request: web.Request) -> web.Response:
    """The calling user."""
    principal = principal_of(request)
    at = position(request)
    user = await request.app[ACCOUNTS].get(principal.user_id)
    body = user.to_json()
    body["authenticated_with"] = "api_key" if principal.key_id else "token"
    return reply(body, at=at)


@routes.get("/api/v1/users")
@query_params(
    *PAGING, "role", bounds={"limit": (1, 500), "offset": (0, 10**9)}, choices={"role": Role}
)
async def list_users(request: web.Request) -> web.Response:
    """List users (admins only), optionally by role."""
    require_role(request, Role.ADMIN)
    limit = int_query(request, "limit", 50)
    offset = int_query(request, "offset", 0)
    chosen = choice_query(request, "role")
    role = None if chosen is None else Role(chosen)
    at = position(request)
    found, total = await request.app[ACCOUNTS].list_users(role=role, limit=limit, offset=offset)
    return reply(offset_listing(request, [u.to_json() for u in found], total, offset), at=at)


CREATE_USER_BODY = object_body(
    {
        "username": {"type": "string", "pattern": USERNAME_PATTERN},
        "password": NEW_PASSWORD,
        "role": {"type": "string", "enum": ROLES, "default": "user"},
    },
    required=["username"],
)


@routes.post("/api/v1/users")
@documented(CREATE_USER_BODY, _201="the user (a generated password, if none was given, once)")
async def create_user(request: web.Request) -> web.Response:
    """Create a user (admins only)."""
    who = caller(request, roles=(Role.ADMIN,))
    body = await validated_body(request, CREATE_USER_BODY)
    role = Role(body.get("role", Role.USER.value))
    at = position(request)
    user = await request.app[ACCOUNTS].create_user(
        body["username"], role, body.get("password"), caller=who
    )
    return reply(user.to_json(), status=201, at=at, location=f"/api/v1/users/{user.user_id}")


@routes.get("/api/v1/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    """One user (admins only)."""
    require_role(request, Role.ADMIN)
    user_id = _user_id(request)
    at = position(request)
    return reply((await request.app[ACCOUNTS].get(user_id)).to_json(), at=at)


UPDATE_USER_BODY = object_body(
    {"role": {"type": "string", "enum": ROLES}, "disabled": {"type": "boolean"}}
)


@routes.patch("/api/v1/users/{user_id}")
@documented(UPDATE_USER_BODY, _200="the updated user")
async def update_user(request: web.Request) -> web.Response:
    """Change a user's role, or disable or re-enable them (admins only)."""
    who = caller(request, roles=(Role.ADMIN,))
    user_id = _user_id(request)
    body = await validated_body(request, UPDATE_USER_BODY)
    role = Role(body["role"]) if "role" in body else None
    disabled = body.get("disabled")
    at = position(request)
    user = await request.app[ACCOUNTS].update_user(
        user_id, role=role, disabled=disabled, caller=who
    )
    return reply(user.to_json(), at=at)


OWN_PASSWORD_BODY = object_body(
    {"current": strings(max_length=passwords.MAX_LENGTH), "new": NEW_PASSWORD},
    required=["current", "new"],
)
SET_PASSWORD_BODY = object_body({"new": NEW_PASSWORD}, required=["new"])


@routes.post("/api/v1/users/me/password")
@documented(OWN_PASSWORD_BODY, _200="a fresh JWT, as a login answers")
async def change_own_password(request: web.Request) -> web.Response:
    """Change the caller's password (the current one is needed): every JWT issued before is
    revoked, and the answer carries a fresh one, as a login does."""
    principal = principal_of(request)
    body = await validated_body(request, OWN_PASSWORD_BODY)
    accounts = request.app[ACCOUNTS]
    who = caller(request, roles=Role)
    await accounts.set_password(principal.user_id, body["new"], current=body["current"], caller=who)
    user = await accounts.get(principal.user_id)
    return token_response(request, user, principal.scopes)


@routes.put("/api/v1/users/{user_id}/password")
@documented(SET_PASSWORD_BODY, _204="the password is set")
async def set_password(request: web.Request) -> web.Response:
    """Set a user's password (admins only): every JWT of theirs issued before is revoked."""
    who = caller(request, roles=(Role.ADMIN,))
    user_id = _user_id(request)
    body = await validated_body(request, SET_PASSWORD_BODY)
    await request.app[ACCOUNTS].set_password(user_id, body["new"], caller=who)
    return web.Response(status=204)


@routes.post("/api/v1/users/{user_id}/revoke-tokens")
async def revoke_tokens(request: web.Request) -> web.Response:
    """Revoke every JWT the user was issued until now (admins only); their streams opened with
    those tokens close. API keys are not affected."""
    who = caller(request, roles=(Role.ADMIN,))
    user_id = _user_id(request)
    at = position(request)
    user = await request.app[ACCOUNTS].revoke_tokens(user_id, caller=who)
    return reply(user.to_json(), at=at)
