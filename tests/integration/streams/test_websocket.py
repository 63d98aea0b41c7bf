"""The WebSocket endpoint: graphql-ws shaped subscriptions, each with its own resume position,
authentication by header or first message, close codes, and tenant isolation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from streams_support import as_service_caller, new_project, queued_job, run_job

from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.services import Services
from tests.support import settled

Client = TestClient[Any, Any]
WS = aiohttp.ClientWebSocketResponse


def tick(n: int) -> EncodedEvent:
    return EncodedEvent(type="test.a", schema_version=1, data={"n": n})


async def receive(ws: WS, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not until(got):
        msg = await asyncio.wait_for(ws.receive(), 20)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        got.append(json.loads(msg.data))
    return got


def caught_up(sub_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda got: any(m["type"] == "caught_up" and m["id"] == sub_id for m in got)


def events(got: list[dict[str, Any]], sub_id: str) -> list[dict[str, Any]]:
    return [m["payload"] for m in got if m["type"] == "event" and m["id"] == sub_id]


async def subscribe(ws: WS, sub_id: str, **payload: Any) -> None:
    await ws.send_json({"type": "subscribe", "id": sub_id, "payload": payload})


async def test_several_subscriptions_on_one_socket_each_resume_from_their_own_position(
    client: Client, node: LogNode, admin: Any
) -> None:
    await node.store.append("test-ws", ANY_VERSION, [tick(n) for n in range(6)])
    head = await settled(node)
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)

    await subscribe(ws, "a", stream="all", after=head - 6)
    await subscribe(ws, "b", stream="all", after=head - 2, types=["test.*"])
    got = await receive(ws, lambda m: caught_up("a")(m) and caught_up("b")(m))
    await node.store.append("test-ws", ANY_VERSION, [tick(6)])
    got += await receive(ws, lambda m: len(events(m, "a")) == 1 and len(events(m, "b")) == 1)
    await ws.send_json({"type": "complete", "id": "a"})
    await node.store.append("test-ws", ANY_VERSION, [tick(7)])
    later = await receive(ws, lambda m: len(events(m, "b")) == 1)
    await ws.close()

    subscribed = [m for m in got if m["type"] == "subscribed"]
    assert [(m["id"], m["payload"]["position"]) for m in subscribed] == [
        ("a", head - 6),
        ("b", head - 2),
    ]
    assert [e["position"] for e in events(got, "a")] == list(range(head - 5, head + 2))
    assert [e["position"] for e in events(got, "b")] == [head - 1, head, head + 1]
    marks = [m for m in got if m["type"] == "caught_up"]
    assert sorted(m["payload"]["position"] for m in marks) == [head, head]
    assert events(later, "a") == []
    assert [e["data"] for e in events(later, "b")] == [{"n": 7}]


async def test_a_socket_may_authenticate_with_a_first_message_and_pings_get_pongs(
    client: Client, user: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws")
    await ws.send_json({"type": "auth", "payload": {"token": user.key}})
    ack = await ws.receive_json(timeout=10)
    await ws.send_json({"type": "ping", "payload": {"x": 1}})
    pong = await ws.receive_json(timeout=10)
    await subscribe(ws, "s", stream="all")
    got = await receive(ws, caught_up("s"))
    await ws.close()

    assert ack == {"type": "connection_ack", "payload": {"user_id": user.user_id}}
    assert pong == {"type": "pong", "payload": {"x": 1}}
    assert [m["type"] for m in got] == ["subscribed", "caught_up"]


async def test_a_stream_token_authenticates_a_socket_by_message_or_query(
    client: Client, user: Any
) -> None:
    token = (await (await client.post("/api/v1/stream-tokens", headers=user.headers)).json())[
        "token"
    ]
    by_message = await client.ws_connect("/api/v1/ws")
    await by_message.send_json({"type": "connection_init", "payload": {"token": token}})
    ack = await by_message.receive_json(timeout=10)
    by_query = await client.ws_connect(f"/api/v1/ws?access_token={token}")
    await subscribe(by_query, "s", stream="all")
    got = await receive(by_query, caught_up("s"))

    assert ack["type"] == "connection_ack"
    assert got[0]["type"] == "subscribed"
    await by_message.close()
    await by_query.close()


async def close_code(ws: WS) -> int | None:
    while True:
        msg = await asyncio.wait_for(ws.receive(), 20)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def test_bad_credentials_late_auth_and_subscribing_unauthenticated_close_with_4401(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    client = await make_client(stream_auth_timeout=0.3)
    bad = await client.ws_connect("/api/v1/ws")
    await bad.send_json({"type": "auth", "payload": {"token": "hx_not_a_key"}})
    silent = await client.ws_connect("/api/v1/ws")
    early = await client.ws_connect("/api/v1/ws")
    await subscribe(early, "s", stream="all")

    assert await close_code(bad) == 4401
    assert await close_code(silent) == 4401
    assert await close_code(early) == 4401


async def test_malformed_messages_close_with_4400(client: Client, admin: Any) -> None:
    for message in ("not json", '{"no": "type"}', '{"type": "launch"}', '{"type": "subscribe"}'):
        ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
        await ws.send_str(message)
        assert await close_code(ws) == 4400, message


async def test_too_many_subscriptions_on_one_socket_close_with_4429(
    make_client: Callable[..., Awaitable[Client]], admin: Any
) -> None:
    client = await make_client(stream_max_subscriptions=2)
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    for n in range(3):
        await subscribe(ws, f"s{n}", stream="all")

    assert await close_code(ws) == 4429


async def test_invalid_subscriptions_get_an_error_and_the_socket_stays_open(
    client: Client, admin: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    await subscribe(ws, "x", stream="jobs:all")
    await subscribe(ws, "y", stream="all", types=["job.%"])
    await subscribe(ws, "z", stream="all", after=-4)
    got = await receive(ws, lambda m: len(m) == 3)
    await subscribe(ws, "ok", stream="all")
    more = await receive(ws, caught_up("ok"))
    await ws.close()

    assert [(m["type"], m["id"], m["payload"]["code"]) for m in got] == [
        ("error", "x", "VALIDATION_ERROR"),
        ("error", "y", "VALIDATION_ERROR"),
        ("error", "z", "VALIDATION_ERROR"),
    ]
    assert more[0]["type"] == "subscribed"


async def test_websocket_subscribers_see_only_what_they_may_see(
    client: Client,
    node: LogNode,
    services: Services,
    user: Any,
    other_user: Any,
) -> None:
    mine = await new_project(services, user, "mine")
    theirs = await new_project(services, other_user, "theirs")
    job_id = await queued_job(services, other_user, theirs)
    after = await settled(node)
    ws = await client.ws_connect("/api/v1/ws", headers=user.headers)

    await subscribe(ws, "theirs", stream=f"project:{theirs}")
    await subscribe(ws, "their-job", stream=f"job:{job_id}")
    await subscribe(ws, "all", stream="all", after=after)
    got = await receive(ws, caught_up("all"))
    await services.projects.update(as_service_caller(other_user), theirs, description="x")
    await services.projects.update(as_service_caller(user), mine, description="y")
    got += await receive(ws, lambda m: len(events(m, "all")) == 1)
    await ws.close()

    errors = {m["id"]: m["payload"]["code"] for m in got if m["type"] == "error"}
    assert errors == {"theirs": "NOT_FOUND", "their-job": "NOT_FOUND"}
    assert [e["stream_id"] for e in events(got, "all")] == [f"project-{mine}"]


async def test_a_job_subscription_completes_after_the_job_ends(
    client: Client, services: Services, user: Any
) -> None:
    project = await new_project(services, user)
    job_id = await queued_job(services, user, project)
    ws = await client.ws_connect("/api/v1/ws", headers=user.headers)

    await subscribe(ws, "j", stream=f"job:{job_id}")
    await receive(ws, caught_up("j"))
    await run_job(services, job_id)
    got = await receive(ws, lambda m: any(x["type"] == "complete" for x in m))
    await ws.close()

    assert events(got, "j")[-1]["type"] == "job.completed"
    assert got[-1] == {"type": "complete", "id": "j"}


async def test_an_auth_message_for_another_user_closes_the_socket_with_4403(
    client: Client, user: Any, other_user: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws", headers=user.headers)
    await ws.send_json({"type": "auth", "payload": {"token": other_user.key}})

    assert await close_code(ws) == 4403
