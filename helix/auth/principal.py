"""Who is calling: set on every authenticated request by the auth middleware, and what the
events a request appends record about it."""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs
from aiohttp import web

from helix import access
from helix.domain.user import Role
from helix.errors import Forbidden, Unauthorized
from helix.services.caller import Caller


@attrs.frozen(kw_only=True)
class Principal:
    user_id: uuid.UUID
    username: str
    role: Role
    key_id: uuid.UUID | None = None  # set when the caller used an API key
    # When the credential stops holding by itself (a stream token); a live stream ends then.
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """How events' metadata names this caller: `user:<id>` or `key:<id>`."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"

    @property
    def sees_everything(self) -> bool:
        return access.sees_everything(self.role)


PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = "request_id"  # request[REQUEST_ID]: this request's X-Request-ID
# The client's address when a trusted proxy forwarded the request (set by the API's middleware).
CLIENT_ADDRESS = web.RequestKey("client_address", str)


def principal_of(request: web.Request) -> Principal:
    """The authenticated caller; 401 if the request carried no valid credentials."""
    found = request.get(PRINCIPAL)
    if not isinstance(found, Principal):
        raise Unauthorized("authentication required")
    return found


def require_role(request: web.Request, *roles: Role) -> Principal:
    principal = principal_of(request)
    if principal.role not in roles:
        raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
    return principal


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID, ""))


def client_address(request: web.Request) -> str:
    return request.get(CLIENT_ADDRESS) or request.remote or "unknown"


def anonymous_caller(request: web.Request, *, actor: str = "anonymous") -> Caller:
    """The caller of a request that has no principal (yet): a login, or the first sight of an
    external issuer's token, whose events name `actor`. It may see nothing, and its writes
    commit on their own, apart from any idempotency key of the request."""
    return Caller(
        user_id=actor,
        name=actor,
        actor=actor,
        request_id=request_id(request) or str(uuid.uuid4()),
        source=client_address(request),
    )
