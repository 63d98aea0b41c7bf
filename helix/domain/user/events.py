"""What happened to a user: the events of the user aggregate (stream `user-<uuid>`).

API keys and logins are recorded on their user's stream, so one stream is a user's whole security
history. A failed login for a username that does not exist has no user stream; it goes to the
day's `auth-failures-<yyyy-mm-dd>` stream instead.

Secrets stay out of the log: an API key event carries the sha256 of a high-entropy key (which
reveals nothing), and password hashes live in a credentials table, never in an event, because
events are shown to auditors and replayed to subscribers for ever.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    WORKER = "worker"
    AUDITOR = "auditor"


@attrs.frozen(kw_only=True)
class UserCreated:
    user_id: UUID
    username: str
    role: Role
    # Set for a user provisioned from an external issuer's token: "<issuer>|<sub>".
    external_subject: str | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class UserRoleChanged:
    user_id: UUID
    from_role: Role
    to_role: Role
    at: datetime


@attrs.frozen(kw_only=True)
class UserDisabled:
    user_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class UserEnabled:
    user_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class UserPasswordChanged:
    """The hash itself is kept out of the log (see the module docstring). A new password also
    ends every JWT of the user issued before `at`, as `TokensRevoked` does."""

    user_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class ApiKeyCreated:
    user_id: UUID
    key_id: UUID
    name: str
    prefix: str
    key_sha256: str
    # None: every scope the user's role allows (keys created before scopes existed, too).
    scopes: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ApiKeyExpired:
    """Recorded once, the first time a key is refused because its `expires_at` has passed."""

    user_id: UUID
    key_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class TokenRevoked:
    """One JWT (by its `jti`) is refused from now on, until it would have expired anyway."""

    user_id: UUID
    token_id: str
    expires_at: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class TokensRevoked:
    """Every JWT of the user issued before `at` is refused from now on."""

    user_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class ApiKeyRevoked:
    user_id: UUID
    key_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class LoginSucceeded:
    user_id: UUID
    username: str
    method: str
    at: datetime


@attrs.frozen(kw_only=True)
class LoginFailed:
    """`user_id` is None when no user has that username."""

    username: str
    user_id: UUID | None = None
    reason: str
    at: datetime


Event: TypeAlias = (
    UserCreated
    | UserRoleChanged
    | UserDisabled
    | UserEnabled
    | UserPasswordChanged
    | ApiKeyCreated
    | ApiKeyRevoked
    | ApiKeyExpired
    | TokenRevoked
    | TokensRevoked
    | LoginSucceeded
    | LoginFailed
)

EVENTS: dict[str, type] = {
    "user.created": UserCreated,
    "user.role_changed": UserRoleChanged,
    "user.disabled": UserDisabled,
    "user.enabled": UserEnabled,
    "user.password_changed": UserPasswordChanged,
    "api_key.created": ApiKeyCreated,
    "api_key.revoked": ApiKeyRevoked,
    "api_key.expired": ApiKeyExpired,
    "user.token_revoked": TokenRevoked,
    "user.tokens_revoked": TokensRevoked,
    "auth.login_succeeded": LoginSucceeded,
    "auth.login_failed": LoginFailed,
}
