"""`GET /api/v1/audit/verify`: admins and auditors see the chain verified, or where it breaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.eventstore import verify_chain

Client = TestClient[Any, Any]


async def test_admins_and_auditors_see_the_verified_head_and_its_hash(
    client: Client, node: LogNode, admin: Any, auditor: Any, user: Any, history: Callable[..., Any]
) -> None:
    await history(user)
    assert node.pool is not None
    expected = await verify_chain(node.pool)

    for who in (admin, auditor):
        resp = await client.get("/api/v1/audit/verify", headers=who.headers)
        assert resp.status == 200
        assert await resp.json() == {
            "ok": True,
            "verified_head": expected.verified_head,
            "head_hash": expected.head_hash,
            "first_bad_position": None,
            "reason": None,
        }
    assert expected.verified_head == await node.store.head() > 0


async def test_a_changed_event_is_reported_at_its_position(
    client: Client, node: LogNode, auditor: Any, user: Any, history: Callable[..., Any]
) -> None:
    await history(user)
    assert node.pool is not None
    await node.pool.execute(
        'UPDATE events SET metadata = metadata || \'{"actor": "someone else"}\' WHERE position = 5'
    )

    resp = await client.get("/api/v1/audit/verify", headers=auditor.headers)

    body = await resp.json()
    assert resp.status == 200
    assert body["ok"] is False and body["first_bad_position"] == 5
    assert body["verified_head"] == 4 and body["reason"]


async def test_users_and_workers_may_not_verify(client: Client, user: Any, worker: Any) -> None:
    for who in (user, worker):
        resp = await client.get("/api/v1/audit/verify", headers=who.headers)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "FORBIDDEN"
