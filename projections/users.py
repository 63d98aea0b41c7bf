"""The `users` and `api_keys` read models, folded from the user streams.

Applied inline (the API authenticates against these tables, so a new key works at once) and
rebuildable from the log. Idempotent per event through `users.version`, the last stream
version applied: an event at or below it changes nothing.

`revoked_tokens` (logged-out JWTs) keeps a revocation only until the token's `exp`: each new
revocation prunes the ones past it.

Password hashes are not part of it: `user_passwords` is a credential table written beside the
event by `helix.auth.accounts`, in the event's transaction, and a rebuild never touches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar
from uuid import UUID

import asyncpg

from helix.domain.user.events import (
    EVENTS,
    ApiKeyCreated,
    ApiKeyExpired,
    ApiKeyRevoked,
    LoginSucceeded,
    TokenRevoked,
    TokensRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)
from helix.eventstore import RecordedEvent
from helix.serialization import EventRegistry, default_registry
from helix.sql import load
from projections.base import Tables
from projections.seen import pending_by_version

SQL = load("projections", "users.sql")

_registry: EventRegistry | None = None


def _decode(event: RecordedEvent) -> object:
    global _registry
    if _registry is None:
        _registry = default_registry()
    return _registry.decode(event)


def _sql(name: str, t: Tables) -> str:
    return SQL[name].format(**t)


class UsersProjection:
    name: ClassVar[str] = "users"
    version: ClassVar[int] = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables: ClassVar[tuple[str, ...]] = ("users", "api_keys", "revoked_tokens")
    inline: ClassVar[bool] = True

    async def pending(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> list[RecordedEvent]:
        mine = [e for e in events if e.stream_type == "user"]
        return await pending_by_version(conn, mine, self.event_types, _sql("applied", t))

    async def replay(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> None:
        for event in events:
            await self.apply(conn, event, t)

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent, t: Tables) -> None:
        if event.type not in self.event_types or event.stream_type != "user":
            return  # e.g. a failed login for an unknown username, on an auth-failures stream
        decoded = _decode(event)
        if isinstance(decoded, UserCreated):
            await conn.execute(
                _sql("insert_user", t),
                decoded.user_id,
                decoded.username,
                decoded.role.value,
                decoded.external_subject,
                decoded.at,
                event.version,
            )
            return
        user_id: UUID | None = getattr(decoded, "user_id", None)
        if user_id is None:
            return
        role = disabled = last_login = None
        touched: datetime | None = None
        match decoded:
            case UserRoleChanged():
                role, touched = decoded.to_role.value, decoded.at
            case UserDisabled():
                disabled, touched = True, decoded.at
            case UserEnabled():
                disabled, touched = False, decoded.at
            case UserPasswordChanged():
                touched = decoded.at
            case LoginSucceeded():
                last_login = decoded.at
        status = await conn.execute(
            _sql("advance_user", t),
            user_id,
            event.version,
            role,
            disabled,
            last_login,
            touched is not None,
            touched,
        )
        if status.endswith(" 0"):
            return  # already applied
        match decoded:
            case ApiKeyCreated():
                await conn.execute(
                    _sql("insert_key", t),
                    decoded.key_id,
                    decoded.user_id,
                    decoded.name,
                    decoded.prefix,
                    decoded.key_sha256,
                    decoded.at,
                    None if decoded.scopes is None else list(decoded.scopes),
                    decoded.expires_at,
                )
            case ApiKeyRevoked():
                await conn.execute(_sql("revoke_key", t), decoded.key_id, decoded.at)
            case ApiKeyExpired():
                await conn.execute(_sql("expire_key", t), decoded.key_id, decoded.at)
            case UserPasswordChanged() | TokensRevoked():
                await conn.execute(_sql("tokens_valid_after", t), decoded.user_id, decoded.at)
            case TokenRevoked():
                await conn.execute(
                    _sql("revoke_token", t),
                    decoded.token_id,
                    decoded.user_id,
                    decoded.expires_at,
                    decoded.at,
                )


PROJECTION = UsersProjection()
