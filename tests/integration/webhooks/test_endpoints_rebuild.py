"""Webhook endpoints are a projection of the log: `helix projections rebuild webhooks` gives
back the live table, and leaves the secrets (and so the signatures) alone."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from webhook_support import Caller, Receiver

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.webhook import DisabledReason
from helix.services import system_caller
from helix.services.unit import Tx
from helix.webhooks import WebhookRoles
from helix.webhooks.endpoints import Endpoints
from projections import registry
from projections.rebuild import rebuild

TABLES = ("webhook_endpoints", "webhook_secrets", "webhook_health")


async def _tables(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [dict(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in TABLES
    }


async def test_a_rebuild_gives_back_every_endpoint_and_deliveries_stay_signed_with_its_secret(
    node: LogNode,
    settings: Settings,
    user: Caller,
    admin: Caller,
    receiver: Receiver,
    make_projects: Callable[..., Awaitable[list[uuid.UUID]]],
) -> None:
    assert node.pool is not None
    endpoints = Endpoints(node.store, settings)
    alice, root = user.service, admin.service
    signed, _ = await endpoints.create(alice, url=receiver.url, event_types=["project.*"])
    moved, _ = await endpoints.create(alice, url=receiver.url + "/b", event_types=["job.*"])
    flaky, _ = await endpoints.create(
        root, url=receiver.url + "/c", event_types=["*"], description="c"
    )
    gone, _ = await endpoints.create(
        root, url=receiver.url + "/d", event_types=["*"], enabled=False
    )

    await endpoints.update(
        alice, moved["endpoint_id"], url=receiver.url + "/b2", event_types=["job.*", "x.*"]
    )
    await endpoints.update(root, flaky["endpoint_id"], enabled=False)
    await endpoints.update(root, flaky["endpoint_id"], enabled=True, description="c2")

    async def fails(tx: Tx) -> None:
        await endpoints.disable(tx, flaky["endpoint_id"], DisabledReason.FAILING, "no success")

    await endpoints.writer.run(system_caller("webhooks"), fails)
    _, secret = await endpoints.rotate_secret(alice, signed["endpoint_id"])
    await endpoints.rotate_secret(root, gone["endpoint_id"])
    await endpoints.delete(root, gone["endpoint_id"])
    await endpoints.delete(alice, moved["endpoint_id"])
    live = await _tables(node.pool)
    assert len(live["webhook_endpoints"]) == 4 and len(live["webhook_secrets"]) == 2
    # What the rebuild must bring back is there to bring back.
    await node.pool.execute("UPDATE webhook_endpoints SET url = 'lost', version = 0")

    report = await rebuild(node.store, registry.get("webhooks"), batch_size=2)

    assert report.events > 0
    assert await _tables(node.pool) == live
    rows = {r["endpoint_id"]: r for r in live["webhook_endpoints"]}
    assert rows[flaky["endpoint_id"]]["disabled_reason"] == "failing"
    assert rows[moved["endpoint_id"]]["url"] == receiver.url + "/b2"
    assert rows[gone["endpoint_id"]]["deleted_at"] is not None
    assert rows[signed["endpoint_id"]]["previous_secret_until"] is not None

    receiver.secrets = [secret]  # the new secret only: the old one signs beside it
    roles = WebhookRoles(node.store, settings)
    await roles.start()
    try:
        await make_projects(user, 1)
        await receiver.wait_for(lambda got: len(got) >= 1)
    finally:
        await roles.stop()
    [got] = receiver.received
    assert got.verified and got.body["type"] == "project.created"
    assert len(got.headers["webhook-signature"].split(" ")) == 2
