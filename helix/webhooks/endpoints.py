"""The endpoint registry: every change is a command decided by the endpoint aggregate and
appended through the unit of work, which applies the `webhooks` projection in the same
transaction. The signing secrets are written beside it, in that transaction, to
`webhook_secrets` (never to an event)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from helix.config import Settings
from helix.domain import webhook
from helix.domain.webhook import (
    CreateEndpoint,
    DeleteEndpoint,
    DisabledReason,
    DisableEndpoint,
    EnableEndpoint,
    EndpointState,
    RotateSecret,
    UpdateEndpoint,
    check_event_types,
)
from helix.envelope import rfc3339
from helix.errors import NotFound, ValidationError
from helix.eventstore import EventStore
from helix.services.caller import Caller
from helix.services.unit import Aggregate, Tx, Writer
from helix.webhooks.signatures import new_secret, signing_secret
from helix.webhooks.sql import QUERIES
from helix.webhooks.ssrf import SETTING, AddressGuard, BlockedURL

WEBHOOK: Aggregate[EndpointState, webhook.Command] = Aggregate(
    name="webhook",
    stream_id=webhook.stream_id,
    fold=webhook.fold,
    initial=webhook.INITIAL,
    decide=webhook.decide,
)


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


async def visible(tx: Tx, endpoint_id: uuid.UUID) -> EndpointState:
    """The endpoint if it exists and the caller may see it; 404 otherwise (also for another
    user's, so its existence is not revealed)."""
    state = await tx.state(WEBHOOK, endpoint_id)
    if not state.live or not tx.caller.may_see(str(state.owner)):
        raise NotFound("webhook endpoint not found", endpoint_id=str(endpoint_id))
    return state


async def _read(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(QUERIES["endpoint_get"], endpoint_id)
    return row


class Endpoints:
    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        *,
        guard: AddressGuard | None = None,
        writer: Writer | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.guard = guard or AddressGuard(settings.webhook_allowed_networks)
        self.writer = writer or Writer(store)

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

    async def create(
        self,
        caller: Caller,
        *,
        url: str,
        event_types: Sequence[str],
        description: str = "",
        enabled: bool = True,
        secret: str | None = None,
    ) -> tuple[asyncpg.Record, str]:
        """The new endpoint, owned by the caller, and its secret (generated unless given).
        It receives the events sequenced after it was created."""
        wanted = check_event_types(event_types)
        await self.check_url(url)
        if secret is None:
            secret = new_secret()
        else:
            try:
                secret = signing_secret(secret)
            except ValueError as exc:
                raise ValidationError(str(exc), field="secret") from None
        endpoint_id, owner = uuid.uuid4(), uuid.UUID(caller.user_id)

        async def work(tx: Tx) -> asyncpg.Record:
            head = int(await tx.conn.fetchval(QUERIES["head"]))
            command = CreateEndpoint(
                endpoint_id=endpoint_id, owner=owner, url=url, event_types=wanted,
                description=description, enabled=enabled, after_position=head, at=tx.at,
            )  # fmt: skip
            await tx.decide(WEBHOOK, endpoint_id, command)
            await tx.conn.execute(QUERIES["secret_insert"], endpoint_id, secret)
            return await _read(tx.conn, endpoint_id)

        return await self.writer.run(caller, work), secret

    async def get(self, caller: Caller, endpoint_id: uuid.UUID) -> asyncpg.Record:
        """The endpoint, if the caller may see it; 404 otherwise."""
        row: asyncpg.Record | None = await self.store.pool.fetchrow(
            QUERIES["endpoint_get"], endpoint_id
        )
        if row is None or not caller.may_see(str(row["owner"])):
            raise NotFound("webhook endpoint not found", endpoint_id=str(endpoint_id))
        return row

    async def page(
        self, caller: Caller, *, limit: int, offset: int
    ) -> tuple[list[asyncpg.Record], int]:
        owner = caller.viewer.owner_filter
        rows = await self.store.pool.fetch(QUERIES["endpoint_list"], owner, limit, offset)
        total: int = await self.store.pool.fetchval(QUERIES["endpoint_count"], owner)
        return list(rows), total

    async def update(
        self,
        caller: Caller,
        endpoint_id: uuid.UUID,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> asyncpg.Record:
        """Change what is given (all of it or none); enabling or disabling an endpoint that
        already is, or giving its current values, changes nothing."""
        wanted = check_event_types(event_types) if event_types is not None else None
        if url is not None:
            await self.check_url(url)

        async def work(tx: Tx) -> asyncpg.Record:
            await visible(tx, endpoint_id)
            commands: list[webhook.Command] = []
            if (url, wanted, description) != (None, None, None):
                commands.append(
                    UpdateEndpoint(url=url, event_types=wanted, description=description, at=tx.at)
                )
            if enabled is not None:
                commands.append(EnableEndpoint(at=tx.at) if enabled else DisableEndpoint(at=tx.at))
            await self._decide(tx, endpoint_id, *commands)
            return await _read(tx.conn, endpoint_id)

        return await self.writer.run(caller, work)

    async def _decide(
        self,
        tx: Tx,
        endpoint_id: uuid.UUID,
        *commands: webhook.Command,
        causation_id: uuid.UUID | None = None,
    ) -> EndpointState:
        before = await tx.state(WEBHOOK, endpoint_id)
        after = await tx.decide(WEBHOOK, endpoint_id, *commands, causation_id=causation_id)
        if after.enabled and not before.enabled:
            await tx.conn.execute(QUERIES["health_reset"], endpoint_id)
        return after

    async def disable(
        self,
        tx: Tx,
        endpoint_id: uuid.UUID,
        reason: DisabledReason,
        detail: str,
        *,
        causation_id: uuid.UUID | None = None,
    ) -> None:
        """Disable an endpoint in the caller's unit of work (a no-op, with no event, if it is
        disabled or gone already): the delivery workers' path."""
        state = await tx.state(WEBHOOK, endpoint_id)
        if not state.live:
            return
        command = DisableEndpoint(reason=reason, detail=detail, at=tx.at)
        await self._decide(tx, endpoint_id, command, causation_id=causation_id)

    async def delete(self, caller: Caller, endpoint_id: uuid.UUID) -> None:
        """Delete the endpoint and its secrets: it never signs a delivery again."""

        async def work(tx: Tx) -> None:
            await visible(tx, endpoint_id)
            await tx.decide(WEBHOOK, endpoint_id, DeleteEndpoint(at=tx.at))
            await tx.conn.execute(QUERIES["secret_delete"], endpoint_id)

        await self.writer.run(caller, work)

    async def rotate_secret(
        self, caller: Caller, endpoint_id: uuid.UUID
    ) -> tuple[asyncpg.Record, str]:
        """A new secret; the old one keeps signing (beside it) for the configured overlap."""
        secret = new_secret()

        async def work(tx: Tx) -> asyncpg.Record:
            await visible(tx, endpoint_id)
            until = tx.at + timedelta(seconds=self.settings.webhook_secret_overlap)
            command = RotateSecret(previous_valid_until=until, at=tx.at)
            await tx.decide(WEBHOOK, endpoint_id, command)
            await tx.conn.execute(QUERIES["secret_rotate"], endpoint_id, secret)
            return await _read(tx.conn, endpoint_id)

        return await self.writer.run(caller, work), secret
