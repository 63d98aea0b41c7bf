"""`Idempotency-Key` on POSTs."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode


async def test_the_same_key_and_body_replay_the_stored_response_without_a_second_effect(
    client: TestClient[Any, Any], admin: Any, node: LogNode
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "create-dave-1"}
    body = {"username": "dave", "role": "worker"}

    first = await client.post("/api/v1/users", json=body, headers=headers)
    second = await client.post("/api/v1/users", json=body, headers=headers)

    assert (first.status, second.status) == (201, 201)
    assert await first.json() == await second.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert node.pool is not None
    assert await node.pool.fetchval("SELECT count(*) FROM users WHERE username = 'dave'") == 1


async def test_the_same_key_with_another_body_is_a_conflict(
    client: TestClient[Any, Any], admin: Any
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "k1"}
    await client.post("/api/v1/users", json={"username": "dave"}, headers=headers)

    resp = await client.post("/api/v1/users", json={"username": "erin"}, headers=headers)

    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "CONFLICT"


async def test_keys_are_scoped_per_principal(
    client: TestClient[Any, Any], user: Any, other_user: Any
) -> None:
    one = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci"},
        headers={**user.headers, "Idempotency-Key": "same"},
    )
    two = await client.post(
        "/api/v1/auth/api-keys",
        json={"name": "ci"},
        headers={**other_user.headers, "Idempotency-Key": "same"},
    )

    assert (one.status, two.status) == (201, 201)
    assert (await one.json())["key"] != (await two.json())["key"]
    assert "Idempotent-Replayed" not in two.headers


async def test_a_failed_request_releases_its_key_so_a_retry_runs_again(
    client: TestClient[Any, Any], admin: Any
) -> None:
    headers = {**admin.headers, "Idempotency-Key": "retry-me"}
    bad = await client.post("/api/v1/users", json={"username": "no spaces"}, headers=headers)
    assert bad.status == 422

    good = await client.post("/api/v1/users", json={"username": "no spaces"}, headers=headers)

    assert good.status == 422
    assert "Idempotent-Replayed" not in good.headers


async def test_a_concurrent_duplicate_in_flight_is_a_conflict(
    app: web.Application, aiohttp_client: Any, user: Any
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.json_response({"ok": True}, status=201)

    app.router.add_post("/slow", slow)
    client = await aiohttp_client(app)
    headers = {**user.headers, "Idempotency-Key": "in-flight"}

    first = asyncio.create_task(client.post("/slow", json={}, headers=headers))
    await entered.wait()
    duplicate = await client.post("/slow", json={}, headers=headers)
    release.set()
    original = await first

    assert duplicate.status == 409
    assert original.status == 201
    replay = await client.post("/slow", json={}, headers=headers)
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"


async def test_an_expired_key_runs_the_request_again(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    headers = {**user.headers, "Idempotency-Key": "old"}
    first = await client.post("/api/v1/auth/api-keys", json={}, headers=headers)
    assert node.pool is not None
    await node.pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")

    again = await client.post("/api/v1/auth/api-keys", json={}, headers=headers)

    assert again.status == 201 and "Idempotent-Replayed" not in again.headers
    assert (await again.json())["id"] != (await first.json())["id"]


async def test_an_unreasonable_key_is_refused(client: TestClient[Any, Any], user: Any) -> None:
    resp = await client.post(
        "/api/v1/auth/api-keys", json={}, headers={**user.headers, "Idempotency-Key": "k" * 300}
    )

    assert resp.status == 400
