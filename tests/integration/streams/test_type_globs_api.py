"""Type globs and resume positions from clients, over real HTTP and WebSocket: hostile globs
cost the server nothing, globs past the bounds are refused the same way on every route, and a
WebSocket `after` past the last position is refused as SSE refuses it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from streams_support import EventStream, data, events_of, settled

from helix.bootstrap import LogNode
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.globs import MAX_GLOBS, MAX_LENGTH
from helix.streams.position import MAX_POSITION

Client = TestClient[Any, Any]
WS = aiohttp.ClientWebSocketResponse
TYPE_LENGTH = 140


def stalling(length: int) -> list[str]:
    """The globs of the stalled-server report: `*?*?…*A07`, each `length` characters long."""
    return [("*?" * length)[: length - 3] + f"A{i:02d}" for i in range(MAX_GLOBS)]


def long_type(ending: str) -> str:
    """A type as long as TYPE_LENGTH: the globs' wildcards have room to be tried every way."""
    return "test.stall." + "x" * (TYPE_LENGTH - 11 - len(ending)) + ending


async def receive_until(ws: WS, stop: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while not stop(got):
        msg = await asyncio.wait_for(ws.receive(), 30)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        got.append(json.loads(msg.data))
    return got


async def error_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == "VALIDATION_ERROR"
    error: dict[str, Any] = body["error"]
    return error


async def head_of(node: LogNode) -> int:
    return await settled(node.store.pool)


@pytest.mark.parametrize("length", [100, MAX_LENGTH])
async def test_streams_with_32_stalling_globs_deliver_their_events_and_the_server_keeps_answering(
    client: Client, node: LogNode, admin: Any, length: int
) -> None:
    globs = stalling(length)
    start = await head_of(node)
    resp = await client.get(
        "/api/v1/events/stream",
        params={"type": ",".join(globs), "after": str(start)},
        headers=admin.headers,
    )
    assert resp.status == 200
    sse = EventStream(resp)
    assert [m.event for m in await sse.until(lambda m: bool(m))] == ["caught_up"]
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    await ws.send_json(
        {"type": "subscribe", "id": "s", "payload": {"stream": "all", "types": globs}}
    )
    await receive_until(ws, lambda got: any(m["type"] == "caught_up" for m in got))
    kinds = [long_type("A07" if n % 5 == 0 else "B07") for n in range(40)] + [long_type("A31")]
    await node.store.append(
        "test-stall",
        ANY_VERSION,
        [EncodedEvent(type=t, schema_version=1, data={"n": n}) for n, t in enumerate(kinds)],
    )
    wanted = [n for n, t in enumerate(kinds) if not t.endswith("B07")]

    # The server answers while every event is matched against both streams' globs.
    health = await asyncio.wait_for(client.get("/healthz"), 60)
    from_sse = await sse.events(len(wanted))
    from_ws = await receive_until(ws, lambda got: len(got) == len(wanted))
    page = await client.get(
        "/api/v1/events", params=[("type", g) for g in globs], headers=admin.headers
    )
    resp.close()
    await ws.close()

    assert health.status == 200
    assert [data(m)["data"]["n"] for m in events_of(from_sse)] == wanted
    assert [m["payload"]["data"]["n"] for m in from_ws if m["type"] == "event"] == wanted
    assert page.status == 200
    assert [e["data"]["n"] for e in (await page.json())["items"]] == wanted


@pytest.mark.parametrize(
    "globs",
    [
        [f"t{i}" for i in range(MAX_GLOBS + 1)],
        ["*" * (MAX_LENGTH + 1)],
        ["job.%"],
        ["job.\\"],
    ],
    ids=["too-many", "too-long", "percent", "backslash"],
)
async def test_sse_and_the_audit_log_refuse_globs_past_the_bounds_with_a_422(
    client: Client, admin: Any, globs: list[str]
) -> None:
    sse = await client.get(
        "/api/v1/events/stream", params={"type": ",".join(globs)}, headers=admin.headers
    )
    audit = await client.get(
        "/api/v1/events", params=[("type", g) for g in globs], headers=admin.headers
    )

    assert (await error_of(sse))["details"] == {"field": "type"}
    assert (await error_of(audit))["details"] == {"field": "type"}


async def test_webhook_endpoints_refuse_globs_past_the_bounds_and_change_nothing(
    client: Client, node: LogNode, user: Any
) -> None:
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/h", "event_types": ["job.*"]},
        headers=user.headers,
    )
    assert created.status == 201
    endpoint = await created.json()
    one = f"/api/v1/webhooks/{endpoint['id']}"
    before = await head_of(node)
    bad_lists = [[f"t{i}" for i in range(MAX_GLOBS + 1)], ["job.%"], ["job*\\"], ["a b"]]

    refusals = []
    for bad in bad_lists:
        refusals.append(
            await client.post(
                "/api/v1/webhooks",
                json={"url": "https://hooks.example.com/h", "event_types": bad},
                headers=user.headers,
            )
        )
        refusals.append(await client.patch(one, json={"event_types": bad}, headers=user.headers))
        refusals.append(
            await client.post(
                one + "/replay", json={"since_position": 1, "types": bad}, headers=user.headers
            )
        )
    after = await head_of(node)
    unchanged = await (await client.get(one, headers=user.headers)).json()

    for refused in refusals:
        error = await error_of(refused)
        assert error["details"]["field"].startswith(("event_types", "types")), error
    assert after == before
    assert unchanged["event_types"] == ["job.*"]


async def test_a_websocket_subscription_past_the_bounds_or_the_last_position_is_refused(
    client: Client, admin: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    refused = {
        "too-many": {"types": [f"t{i}" for i in range(MAX_GLOBS + 1)]},
        "too-long": {"types": ["*" * (MAX_LENGTH + 1)]},
        "not-a-list": {"types": 7},
        "negative": {"after": -1},
        "fraction": {"after": 1.5},
        "text": {"after": "12"},
        "boolean": {"after": True},
    }
    for sub_id, payload in refused.items():
        await ws.send_json(
            {"type": "subscribe", "id": sub_id, "payload": {"stream": "all", **payload}}
        )
    await ws.send_json(
        {"type": "subscribe", "id": "last", "payload": {"stream": "all", "after": MAX_POSITION}}
    )
    got = await receive_until(ws, lambda got: any(m["id"] == "last" for m in got))
    sse = await client.get(
        "/api/v1/events/stream", params={"after": str(MAX_POSITION + 1)}, headers=admin.headers
    )
    await ws.close()

    errors = {m["id"]: m["payload"] for m in got if m["type"] == "error"}
    assert set(errors) == set(refused)
    assert {e["code"] for e in errors.values()} == {"VALIDATION_ERROR"}
    assert [m["type"] for m in got if m["id"] == "last"] == ["subscribed"]
    sse_error = await error_of(sse)
    assert "9223372036854775807" in sse_error["message"]
    assert sse_error["details"] == {"field": "after"}


@pytest.mark.parametrize("after", [MAX_POSITION + 1, 10**30])
async def test_a_websocket_position_past_64_bits_is_a_malformed_message(
    client: Client, admin: Any, after: int
) -> None:
    # No client JSON holds an integer past 64 bits (helix.inputs): on a WebSocket that makes
    # the message malformed, so the socket gets an error and closes with 4400.
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    await ws.send_str(
        json.dumps({"type": "subscribe", "id": "s", "payload": {"stream": "all", "after": after}})
    )
    got = await receive_until(ws, lambda got: len(got) == 1)
    closed = await asyncio.wait_for(ws.receive(), 30)
    assert got[0]["type"] == "error"
    assert got[0]["payload"]["code"] == "VALIDATION_ERROR"
    assert "9223372036854775807" in got[0]["payload"]["message"]
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4400
