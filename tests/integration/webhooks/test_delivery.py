"""Deliveries end to end: the log, the dispatcher, the workers and a real receiver."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import attrs
from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver, attempt_rows, delivery_rows, wait_until

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.webhooks import DeliveryWorker, Dispatcher, WebhookRoles
from helix.webhooks.sender import USER_AGENT

MakeProjects = Callable[..., Awaitable[list[uuid.UUID]]]


async def _endpoint(
    client: TestClient[Any, Any], caller: Caller, url: str, **extra: Any
) -> dict[str, Any]:
    body = {"url": url, "event_types": ["project.*"], **extra}
    resp = await client.post("/api/v1/webhooks", json=body, headers=caller.headers)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def test_every_delivery_verifies_with_standardwebhooks_also_during_a_secret_rotation(
    client: TestClient[Any, Any],
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    endpoint = await _endpoint(client, user, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    await make_projects(user, 2)
    await receiver.wait_for(lambda got: len(got) >= 2)

    resp = await client.post(
        f"/api/v1/webhooks/{endpoint['id']}/rotate-secret", headers=user.headers
    )
    rotated = await resp.json()
    assert resp.status == 200 and rotated["secret"] != endpoint["secret"]
    # A receiver that still knows only the old secret, then one that knows only the new one.
    await make_projects(user, 1)
    await receiver.wait_for(lambda got: len(got) >= 3)
    receiver.secrets = [rotated["secret"]]
    await make_projects(user, 1)
    await receiver.wait_for(lambda got: len(got) >= 4)

    assert all(r.verified for r in receiver.received)
    assert [len(r.headers["webhook-signature"].split(" ")) for r in receiver.received] == [
        1,
        1,
        2,
        2,
    ]
    first = receiver.received[0]
    assert first.headers["user-agent"] == USER_AGENT
    assert first.webhook_id == first.body["id"]
    assert set(first.body) == {
        "id", "timestamp", "position", "event_id", "stream_id", "stream_type", "version",
        "project_id", "type", "schema_version", "data", "metadata", "recorded_at",
    }  # fmt: skip
    assert first.body["type"] == "project.created"


async def test_a_burst_to_one_endpoint_reuses_connections_and_records_every_attempt_once(
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    endpoint = await _endpoint(client, user, receiver.url)
    receiver.secrets = [endpoint["secret"]]
    total = 60
    await make_projects(user, total)
    await receiver.wait_for(lambda got: len(got) >= total)

    async def all_recorded() -> bool:
        rows = await delivery_rows(node.store.pool, endpoint["id"])
        return len(rows) == total and all(r["status"] == "succeeded" for r in rows)

    await wait_until(all_recorded)
    assert all(r.verified for r in receiver.received)
    # Kept-alive connections, each opened past the guard: never one per delivery.
    assert len({r.peer_port for r in receiver.received}) <= settings.webhook_concurrency
    for row in await delivery_rows(node.store.pool, endpoint["id"]):
        attempts = await attempt_rows(node.store.pool, row["delivery_id"])
        assert row["attempts"] == 1 and [(a["attempt"], a["status_code"]) for a in attempts] == [
            (1, 200)
        ]


async def test_a_receiver_that_was_down_gets_every_event_once_back_and_retries_follow_the_schedule(
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    idle_receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    assert node.pool is not None
    endpoint = await _endpoint(client, user, idle_receiver.url)
    idle_receiver.secrets = [endpoint["secret"]]
    projects = await make_projects(user, 3)

    async def two_failures_each() -> bool:
        rows = await delivery_rows(node.pool, endpoint["id"])  # type: ignore[arg-type]
        return len(rows) == 3 and all(r["attempts"] >= 2 for r in rows)

    await wait_until(two_failures_each)
    await idle_receiver.start()
    try:
        await idle_receiver.wait_for(lambda got: len(got) >= 3)
        await wait_until(
            lambda: _all_status(node, endpoint["id"], "succeeded")  # type: ignore[arg-type]
        )
    finally:
        await idle_receiver.stop()

    delivered = {r.body["project_id"] for r in idle_receiver.received}
    assert delivered == {str(p) for p in projects}
    assert len(idle_receiver.received) == 3
    schedule = settings.webhook_retry_schedule
    for row in await delivery_rows(node.pool, endpoint["id"]):
        attempts = await attempt_rows(node.pool, row["delivery_id"])
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert [a["error_class"] for a in attempts] == ["connection_error"] * 2 + [None]
        assert attempts[-1]["status_code"] == 200
        for n, failed in enumerate(attempts[:-1], start=1):
            waited = (failed["next_attempt_at"] - failed["recorded_at"]).total_seconds()
            assert schedule[n] * 0.8 - 1e-3 <= waited <= schedule[n] * 1.2 + 1e-3
            assert attempts[n]["started_at"] >= failed["next_attempt_at"] - timedelta(
                milliseconds=5
            )


async def _all_status(node: LogNode, endpoint_id: str, status: str) -> bool:
    assert node.pool is not None
    rows = await delivery_rows(node.pool, endpoint_id)
    return bool(rows) and all(r["status"] == status for r in rows)


async def test_a_receiver_failing_forever_is_dead_lettered_and_disabled_after_the_period(
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    receiver: Receiver,
    make_projects: MakeProjects,
) -> None:
    assert node.pool is not None
    receiver.status = lambda _r: 500
    roles = WebhookRoles(node.store, attrs.evolve(settings, webhook_disable_after=1.0))
    await roles.start()
    try:
        endpoint = await _endpoint(client, user, receiver.url)
        await make_projects(user, 1)
        await wait_until(lambda: _all_status(node, endpoint["id"], "dead"))
        [dead] = await delivery_rows(node.pool, endpoint["id"])
        attempts = await attempt_rows(node.pool, dead["delivery_id"])
        assert len(attempts) == len(settings.webhook_retry_schedule)
        assert {a["status_code"] for a in attempts} == {500}
        assert dead["dead_at"] is not None

        async def disabled() -> bool:
            resp = await client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=user.headers)
            return (await resp.json())["enabled"] is False

        # Still failing once the period has passed: the next failure disables it.
        async def failing_for_the_period() -> bool:
            await make_projects(user, 1)
            return await disabled()

        await wait_until(failing_for_the_period)
    finally:
        await roles.stop()
    resp = await client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=user.headers)
    assert (await resp.json())["disabled_reason"] == "failing"
    types = [e.type for e in await node.store.read_all(0, 1000)]
    assert "webhook.disabled" in types

    resp = await client.patch(
        f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=user.headers
    )
    assert (await resp.json())["enabled"] is True


async def test_one_exhausted_delivery_does_not_disable_an_endpoint_by_itself(
    client: TestClient[Any, Any],
    node: LogNode,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    receiver.status = lambda _r: 500
    endpoint = await _endpoint(client, user, receiver.url)
    await make_projects(user, 1)
    await wait_until(lambda: _all_status(node, endpoint["id"], "dead"))
    resp = await client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=user.headers)
    assert (await resp.json())["enabled"] is True


async def test_a_410_gone_disables_the_endpoint_at_once(
    client: TestClient[Any, Any],
    node: LogNode,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    receiver.status = lambda _r: 410
    endpoint = await _endpoint(client, user, receiver.url)
    await make_projects(user, 1)

    async def disabled() -> bool:
        resp = await client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=user.headers)
        return (await resp.json())["disabled_reason"] == "gone"

    await wait_until(disabled)
    assert len(receiver.received) == 1
    # The disabling is Helix's own event, caused by the delivered event's answer.
    assert node.pool is not None
    [delivery] = await delivery_rows(node.pool, endpoint["id"])
    metadata = await node.pool.fetchval(
        "SELECT metadata FROM events WHERE stream_id = $1 AND type = 'webhook.disabled'",
        f"webhook-{endpoint['id']}",
    )
    assert metadata["actor"] == "system:webhooks"
    assert metadata["causation_id"] == str(delivery["event_id"])
    assert metadata["correlation_id"] == metadata["request_id"]


async def test_two_dispatchers_and_two_workers_never_deliver_an_event_twice_to_an_endpoint(
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    admin: Caller,
    receiver: Receiver,
    make_projects: MakeProjects,
) -> None:
    assert node.pool is not None
    mine = await _endpoint(client, user, receiver.url + "/mine")
    everything = await _endpoint(client, admin, receiver.url + "/all", event_types=["*"])
    roles = [
        Dispatcher(node.store, settings),
        Dispatcher(node.store, settings),
        DeliveryWorker(node.store, settings, name="a"),
        DeliveryWorker(node.store, settings, name="b"),
    ]
    for role in roles:
        await role.start()
    try:
        projects = await make_projects(user, 20)
        await make_projects(admin, 5)

        async def all_delivered() -> bool:
            for endpoint in (mine, everything):
                rows = await delivery_rows(node.pool, endpoint["id"])  # type: ignore[arg-type]
                if not rows or any(r["status"] != "succeeded" for r in rows):
                    return False
            return len(await delivery_rows(node.pool, mine["id"])) == 20  # type: ignore[arg-type]

        await wait_until(all_delivered)
    finally:
        for role in reversed(roles):
            await role.stop()

    by_path: dict[str, list[str]] = {}
    for got in receiver.received:
        by_path.setdefault(got.path, []).append(got.webhook_id)
    for ids in by_path.values():
        assert len(ids) == len(set(ids))
    user_events = {str(p) for p in projects}
    assert len(by_path["/hook/mine"]) == 20
    assert {got.body["project_id"] for got in receiver.received if got.path == "/hook/mine"} == (
        user_events
    )
    # The admin's endpoint sees everything: the user's events too.
    assert set(by_path["/hook/mine"]) <= set(by_path["/hook/all"])
