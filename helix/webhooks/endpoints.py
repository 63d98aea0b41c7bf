"""The endpoint registry: every change is an event on `webhook-<uuid>`, written in the same
transaction as the endpoint row (which alone holds the secrets)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from helix import globs
from helix.config import Settings
from helix.domain import webhook
from helix.domain.webhook import (
    DisabledReason,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)
from helix.envelope import rfc3339
from helix.errors import NotFound, ValidationError
from helix.eventstore import EventStore
from helix.webhooks.signatures import new_secret, secret_key
from helix.webhooks.sql import QUERIES
from helix.webhooks.ssrf import SETTING, AddressGuard, BlockedURL


def utcnow() -> datetime:
    return datetime.now(UTC)


def endpoint_view(row: asyncpg.Record, *, secret: str | None = None) -> dict[str, Any]:
    """The JSON form of an endpoint; the secret only when given (at creation)."""
    view: dict[str, Any] = {
        "id": str(row["endpoint_id"]),
        "owner": str(row["owner"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "secret_rotated_until": rfc3339(row["previous_secret_until"]),
        "failing_since": rfc3339(row["failing_since"]),
        "last_success_at": rfc3339(row["last_success_at"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def check_event_types(event_types: Sequence[str]) -> tuple[str, ...]:
    if not event_types:
        raise ValidationError("event_types needs at least one type or glob", field="event_types")
    return globs.check(event_types, "event_types")


class Endpoints:
    def __init__(
        self, store: EventStore, settings: Settings, *, guard: AddressGuard | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.guard = guard or AddressGuard(settings.webhook_allowed_networks)

    async def check_url(self, url: str) -> str:
        """The URL, if the SSRF guard lets it be registered (its host resolved now, too)."""
        try:
            await self.guard.vet_url(url)
        except BlockedURL as exc:
            refusal = exc.refusal
            raise ValidationError(
                str(exc), field="url", address=str(refusal.address),
                network=str(refusal.network), setting=SETTING,
            ) from None  # fmt: skip
        except ValueError as exc:
            raise ValidationError(str(exc), field="url") from None
        return url

    async def _append(
        self, conn: asyncpg.Connection, row: asyncpg.Record, event: object, metadata: dict[str, Any]
    ) -> None:
        # The row's version counts the stream's events; the row lock orders the writers.
        stream = webhook.stream_id(row["endpoint_id"])
        await self.store.append(stream, row["version"] - 1, [event], metadata=metadata, conn=conn)

    async def create(
        self,
        owner: uuid.UUID,
        *,
        url: str,
        event_types: Sequence[str],
        description: str = "",
        enabled: bool = True,
        secret: str | None = None,
        metadata: dict[str, Any],
    ) -> tuple[asyncpg.Record, str]:
        """The new endpoint and its secret (generated unless given). It receives the events
        sequenced after it was created."""
        wanted = check_event_types(event_types)
        await self.check_url(url)
        if secret is None:
            secret = new_secret()
        else:
            try:
                secret_key(secret)
            except ValueError as exc:
                raise ValidationError(str(exc), field="secret") from None
        endpoint_id, at = uuid.uuid4(), utcnow()
        async with self.store.transaction() as conn:
            head = await conn.fetchval("SELECT head_position FROM sequencer_state WHERE id = 1")
            row = await conn.fetchrow(
                QUERIES["endpoint_insert"], endpoint_id, owner, url, list(wanted),
                globs.like_patterns(wanted), description, enabled, secret, head, at,
            )  # fmt: skip
            event = WebhookCreated(
                endpoint_id=endpoint_id, owner=owner, url=url, event_types=wanted,
                description=description, enabled=enabled, at=at,
            )  # fmt: skip
            await self._append(conn, row, event, metadata)
        return row, secret

    async def get(self, endpoint_id: uuid.UUID, owner: uuid.UUID | None) -> asyncpg.Record:
        """The endpoint, if `owner` is None (an admin) or owns it; 404 otherwise."""
        row: asyncpg.Record | None = await self.store.pool.fetchrow(
            QUERIES["endpoint_get"], endpoint_id
        )
        if row is None or (owner is not None and row["owner"] != owner):
            raise NotFound("webhook endpoint not found", endpoint_id=str(endpoint_id))
        return row

    async def page(
        self, owner: uuid.UUID | None, *, limit: int, offset: int
    ) -> tuple[list[asyncpg.Record], int]:
        rows = await self.store.pool.fetch(QUERIES["endpoint_list"], owner, limit, offset)
        total: int = await self.store.pool.fetchval(QUERIES["endpoint_count"], owner)
        return list(rows), total

    async def _locked(
        self, conn: asyncpg.Connection, endpoint_id: uuid.UUID, owner: uuid.UUID | None
    ) -> asyncpg.Record:
        row: asyncpg.Record | None = await conn.fetchrow(QUERIES["endpoint_lock"], endpoint_id)
        if row is None or (owner is not None and row["owner"] != owner):
            raise NotFound("webhook endpoint not found", endpoint_id=str(endpoint_id))
        return row

    async def update(
        self,
        endpoint_id: uuid.UUID,
        owner: uuid.UUID | None,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        metadata: dict[str, Any],
    ) -> asyncpg.Record:
        wanted = check_event_types(event_types) if event_types is not None else None
        if url is not None:
            await self.check_url(url)
        at = utcnow()
        async with self.store.transaction() as conn:
            old = await self._locked(conn, endpoint_id, owner)
            new_globs = wanted if wanted is not None else tuple(old["event_types"])
            row = await conn.fetchrow(
                QUERIES["endpoint_update"], endpoint_id, url or old["url"], list(new_globs),
                globs.like_patterns(new_globs),
                old["description"] if description is None else description, at,
            )  # fmt: skip
            event = WebhookUpdated(
                endpoint_id=endpoint_id,
                url=url if url != old["url"] else None,
                event_types=wanted if wanted != tuple(old["event_types"]) else None,
                description=description if description != old["description"] else None,
                at=at,
            )
            await self._append(conn, row, event, metadata)
        return row

    async def set_enabled(
        self,
        endpoint_id: uuid.UUID,
        owner: uuid.UUID | None,
        enabled: bool,
        *,
        reason: DisabledReason = DisabledReason.BY_USER,
        detail: str = "",
        metadata: dict[str, Any],
        conn: asyncpg.Connection | None = None,
    ) -> asyncpg.Record:
        """Enable or disable (a no-op, with no event, if it already is)."""
        if conn is None:
            async with self.store.transaction() as own:
                return await self.set_enabled(
                    endpoint_id, owner, enabled, reason=reason, detail=detail,
                    metadata=metadata, conn=own,
                )  # fmt: skip
        old = await self._locked(conn, endpoint_id, owner)
        if old["enabled"] == enabled:
            return old
        at = utcnow()
        row = await conn.fetchrow(
            QUERIES["endpoint_set_enabled"], endpoint_id, enabled,
            None if enabled else reason.value, at,
        )  # fmt: skip
        event: object = (
            WebhookEnabled(endpoint_id=endpoint_id, at=at)
            if enabled
            else WebhookDisabled(endpoint_id=endpoint_id, reason=reason, detail=detail, at=at)
        )
        await self._append(conn, row, event, metadata)
        return row

    async def delete(
        self, endpoint_id: uuid.UUID, owner: uuid.UUID | None, *, metadata: dict[str, Any]
    ) -> None:
        at = utcnow()
        async with self.store.transaction() as conn:
            await self._locked(conn, endpoint_id, owner)
            row = await conn.fetchrow(QUERIES["endpoint_delete"], endpoint_id, at)
            await self._append(conn, row, WebhookDeleted(endpoint_id=endpoint_id, at=at), metadata)

    async def rotate_secret(
        self, endpoint_id: uuid.UUID, owner: uuid.UUID | None, *, metadata: dict[str, Any]
    ) -> tuple[asyncpg.Record, str]:
        """A new secret; the old one keeps signing (beside it) for the configured overlap."""
        secret, at = new_secret(), utcnow()
        until = at + timedelta(seconds=self.settings.webhook_secret_overlap)
        async with self.store.transaction() as conn:
            await self._locked(conn, endpoint_id, owner)
            row = await conn.fetchrow(QUERIES["endpoint_rotate"], endpoint_id, secret, until, at)
            event = WebhookSecretRotated(endpoint_id=endpoint_id, previous_valid_until=until, at=at)
            await self._append(conn, row, event, metadata)
        return row, secret
