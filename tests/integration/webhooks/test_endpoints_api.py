"""The endpoints API, replay and recovery, visibility, and the SSRF guard at creation."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver, delivery_rows, wait_until

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.webhooks import WebhookRoles
from helix.webhooks.signatures import secret_key

MakeProjects = Callable[..., Awaitable[list[uuid.UUID]]]
MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


async def _create(
    client: TestClient[Any, Any], caller: Caller, url: str, **extra: Any
) -> dict[str, Any]:
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": url, "event_types": ["project.*"], **extra},
        headers=caller.headers,
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_secret_is_generated_in_the_standard_form_and_shown_only_at_creation(
    client: TestClient[Any, Any], user: Caller
) -> None:
    created = await _create(client, user, "https://hooks.example.com/helix")
    assert created["secret"].startswith("whsec_")
    assert 24 <= len(secret_key(created["secret"])) <= 32
    resp = await client.get(f"/api/v1/webhooks/{created['id']}", headers=user.headers)
    shown = await resp.json()
    assert resp.status == 200 and "secret" not in shown
    resp = await client.get("/api/v1/webhooks", headers=user.headers)
    listed = await resp.json()
    assert len(listed["items"]) == 1 and "secret" not in listed["items"][0]


async def test_endpoint_changes_are_events_that_never_carry_the_secret(
    client: TestClient[Any, Any], node: LogNode, user: Caller
) -> None:
    created = await _create(client, user, "https://hooks.example.com/a")
    path = f"/api/v1/webhooks/{created['id']}"
    resp = await client.patch(
        path, json={"url": "https://hooks.example.com/b", "enabled": False}, headers=user.headers
    )
    assert resp.status == 200
    changed = await resp.json()
    assert changed["url"].endswith("/b") and changed["enabled"] is False
    await client.patch(path, json={"enabled": True}, headers=user.headers)
    rotated = await (await client.post(path + "/rotate-secret", headers=user.headers)).json()
    assert (await client.delete(path, headers=user.headers)).status == 204
    assert (await client.get(path, headers=user.headers)).status == 404

    events = await node.store.read_stream(f"webhook-{created['id']}")
    assert [e.type for e in events] == [
        "webhook.created",
        "webhook.updated",
        "webhook.disabled",
        "webhook.enabled",
        "webhook.secret_rotated",
        "webhook.deleted",
    ]
    for event in events:
        text = repr(event.data)
        assert created["secret"] not in text and rotated["secret"] not in text


async def test_another_users_endpoint_is_not_found(
    client: TestClient[Any, Any], user: Caller, other_user: Caller, admin: Caller
) -> None:
    created = await _create(client, user, "https://hooks.example.com/a")
    path = f"/api/v1/webhooks/{created['id']}"
    assert (await client.get(path, headers=other_user.headers)).status == 404
    assert (await client.delete(path, headers=other_user.headers)).status == 404
    assert (await client.post(path + "/test", headers=other_user.headers)).status == 404
    assert (await client.get(path, headers=admin.headers)).status == 200


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "ftp://hooks.example.com/x",
    ],
)
async def test_disallowed_urls_are_refused_at_creation(
    make_client: MakeClient, user: Caller, url: str
) -> None:
    client = await make_client(webhook_allowed_networks=())
    resp = await client.post("/api/v1/webhooks", json={"url": url}, headers=user.headers)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == "url"


async def test_a_users_endpoint_never_receives_another_users_events(
    client: TestClient[Any, Any],
    node: LogNode,
    user: Caller,
    other_user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    alice = await _create(client, user, receiver.url + "/alice", event_types=["*"])
    bob = await _create(client, other_user, receiver.url + "/bob", event_types=["*"])
    alices = {str(p) for p in await make_projects(user, 3)}
    bobs = {str(p) for p in await make_projects(other_user, 2)}
    await receiver.wait_for(lambda got: {g.body["project_id"] for g in got} >= alices | bobs)
    # One more of bob's, then a marker of alice's: once it arrives, bob's was dispatched too.
    bobs |= {str(p) for p in await make_projects(other_user, 1)}
    alices |= {str(p) for p in await make_projects(user, 1)}
    await receiver.wait_for(lambda got: {g.body["project_id"] for g in got} >= alices | bobs)

    def seen(path: str) -> set[str]:
        return {g.body["project_id"] for g in receiver.received if g.path == path} - {None}

    assert seen("/hook/alice") == alices
    assert seen("/hook/bob") == bobs
    for got in receiver.received:
        if got.path == "/hook/alice" and got.body["project_id"] is None:
            assert got.body["stream_id"] == f"user-{user.user.user_id}"
    assert alice["id"] != bob["id"]


async def test_replay_since_a_position_redelivers_exactly_that_range(
    client: TestClient[Any, Any],
    node: LogNode,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    endpoint = await _create(client, user, receiver.url)
    await make_projects(user, 6)
    await receiver.wait_for(lambda got: len(got) >= 6)
    positions = sorted(g.body["position"] for g in receiver.received)
    since, until = positions[2], positions[4]

    resp = await client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay",
        json={"since_position": since, "until_position": until},
        headers=user.headers,
    )
    assert resp.status == 202
    assert await resp.json() == {
        "deliveries": 3,
        "first_position": since,
        "last_position": until,
        "next_position": None,
    }
    await receiver.wait_for(lambda got: len(got) >= 9)
    replayed = receiver.received[6:]
    assert sorted(g.body["position"] for g in replayed) == positions[2:5]
    originals = {g.body["position"]: g.webhook_id for g in receiver.received[:6]}
    assert all(g.webhook_id == originals[g.body["position"]] for g in replayed)
    resp = await client.get(
        f"/api/v1/webhooks/{endpoint['id']}/deliveries?limit=3", headers=user.headers
    )
    page = await resp.json()
    assert {d["kind"] for d in page["items"]} == {"replay"} and page["has_more"]
    seen = [d["id"] for d in page["items"]]
    while page["next"] is not None:
        page = await (await client.get(page["next"], headers=user.headers)).json()
        seen += [d["id"] for d in page["items"]]
    assert len(seen) == len(set(seen)) == 9


async def test_retry_recover_and_ping_keep_the_webhook_id_and_show_their_attempts(
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    assert node.pool is not None
    receiver.status = lambda _r: 500
    endpoint = await _create(client, user, receiver.url)
    base = f"/api/v1/webhooks/{endpoint['id']}"
    await make_projects(user, 2)

    async def both_dead() -> bool:
        rows = await delivery_rows(node.pool, endpoint["id"])  # type: ignore[arg-type]
        return len(rows) == 2 and all(r["status"] == "dead" for r in rows)

    await wait_until(both_dead)
    resp = await client.get(base + "/deliveries?status=dead", headers=user.headers)
    dead = (await resp.json())["items"]
    resp = await client.get(f"{base}/deliveries/{dead[0]['id']}", headers=user.headers)
    shown = await resp.json()
    assert [a["status_code"] for a in shown["attempt_log"]] == [500] * len(
        settings.webhook_retry_schedule
    )
    assert shown["attempts"] == len(settings.webhook_retry_schedule) == dead[0]["attempts"]
    assert shown["attempt_log"][0]["response_body"] == "ok"

    receiver.status = lambda _r: 200
    resp = await client.post(f"{base}/deliveries/{dead[0]['id']}/retry", headers=user.headers)
    assert resp.status == 202
    retried = await resp.json()
    assert retried["event_id"] == dead[0]["event_id"] and retried["kind"] == "retry"
    tries = len(settings.webhook_retry_schedule)

    def arrivals(event_id: str) -> int:
        return sum(1 for g in receiver.received if g.body["id"] == event_id)

    await receiver.wait_for(lambda _got: arrivals(dead[0]["event_id"]) == tries + 1)

    resp = await client.post(
        base + "/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=user.headers
    )
    assert (await resp.json()) == {"deliveries": 1}  # only the one never delivered
    await receiver.wait_for(lambda _got: arrivals(dead[1]["event_id"]) == tries + 1)
    resp = await client.post(base + "/test", headers=user.headers)
    assert resp.status == 202 and (await resp.json())["event_type"] == "webhook.ping"
    await receiver.wait_for(lambda got: got[-1].body["type"] == "webhook.ping")
    assert receiver.received[-1].verified is False  # the receiver was given no secret
    await wait_until(lambda: _no_pending(node, endpoint["id"]))
    resp = await client.post(
        base + "/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=user.headers
    )
    assert (await resp.json()) == {"deliveries": 0}


async def _no_pending(node: LogNode, endpoint_id: str) -> bool:
    assert node.pool is not None
    rows = await delivery_rows(node.pool, endpoint_id)
    return all(r["status"] != "pending" for r in rows)


async def test_a_delivery_the_endpoint_does_not_have_is_not_found_in_the_error_envelope(
    client: TestClient[Any, Any], user: Caller, receiver: Receiver
) -> None:
    endpoint = await _create(client, user, receiver.url)
    missing = uuid.uuid4()
    base = f"/api/v1/webhooks/{endpoint['id']}/deliveries/{missing}"
    for resp in (
        await client.get(base, headers=user.headers),
        await client.post(base + "/retry", headers=user.headers),
    ):
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["code"] == "NOT_FOUND"
        assert error["details"] == {"delivery_id": str(missing)}
