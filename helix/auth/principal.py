"""Who is calling: set on every authenticated request by the auth middleware, and what the
events a request appends record about it."""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs
from aiohttp import web

from helix import access
from helix.domain.user import Role
from helix.domain.user.scopes import effective
from helix.errors import Forbidden, Unauthorized
from helix.services.caller import Caller


@attrs.frozen(kw_only=True)
class Principal:
    user_id: uuid.UUID
    username: str
    role: Role
    key_id: uuid.UUID | None = None  # set when the caller used an API key
    # When the credential stops holding by itself (a stream token, a key with an expiry); a
    # live stream ends then.
    expires_at: datetime | None = None
    # The credential's own scopes (None: all the role allows); see `effective_scopes`.
    scopes: frozenset[str] | None = None
    # A JWT's `jti` and `iat`, so a logout or a revocation of all tokens can end it.
    token_id: str | None = None
    issued_at: datetime | None = None
    stream_token: bool = False  # authenticated by a stream token (`expires_at` is its expiry)

    @property
    def effective_scopes(self) -> frozenset[str]:
        """What this caller may do: its role's scopes intersected with the credential's."""
        return effective(self.role, self.scopes)

    def token_ended_by(self, cutoff: datetime | None) -> bool:
        """Whether this is a JWT issued before `cutoff` (when all the user's tokens were ended:
        a password change, or a revocation of every token)."""
        if cutoff is None or self.token_id is None:
            return False
        return self.issued_at is None or self.issued_at < cutoff

    def require_scope(self, scope: str) -> None:
        if scope not in self.effective_scopes:
            raise Forbidden(f"the credentials lack the scope {scope}", scope=scope)

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
