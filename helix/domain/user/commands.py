"""What may be asked of a user: the commands of the user aggregate.

Every command carries `at` and the ids and key material the handler generated, so `decide` is
deterministic. Rules that span users are counted by the handler and passed in: a command that
could leave Helix without an enabled admin carries how many other enabled admins there are.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs

from helix.domain.user.events import Role


@attrs.frozen(kw_only=True)
class CreateUser:
    user_id: UUID
    username: str
    role: Role
    external_subject: str | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ChangeRole:
    to_role: Role
    other_enabled_admins: int
    at: datetime


@attrs.frozen(kw_only=True)
class DisableUser:
    other_enabled_admins: int
    at: datetime


@attrs.frozen(kw_only=True)
class EnableUser:
    at: datetime


@attrs.frozen(kw_only=True)
class SetPassword:
    """The hash goes to the credential table, never into a command or an event."""

    at: datetime


@attrs.frozen(kw_only=True)
class CreateApiKey:
    key_id: UUID
    name: str
    prefix: str
    key_sha256: str
    scopes: tuple[str, ...] | None = None  # None: all the user's role allows
    expires_at: datetime | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ExpireApiKey:
    """Record that a key was presented after its `expires_at` (once: a repeat is no event)."""

    key_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class RevokeToken:
    """Log a JWT out: `token_id` is its `jti`, `expires_at` its `exp`."""

    token_id: str
    expires_at: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class RevokeTokens:
    """End every JWT of the user issued before `at`."""

    at: datetime


@attrs.frozen(kw_only=True)
class RevokeApiKey:
    key_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class RecordLogin:
    """A sign-in attempt; `failure` is why the credential did not match (None: it did)."""

    method: str
    failure: str | None = None
    at: datetime


Command: TypeAlias = (
    CreateUser
    | ChangeRole
    | DisableUser
    | EnableUser
    | SetPassword
    | CreateApiKey
    | RevokeApiKey
    | ExpireApiKey
    | RevokeToken
    | RevokeTokens
    | RecordLogin
)
