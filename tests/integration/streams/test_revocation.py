"""Live streams end when their credentials stop holding: a revoked API key, a disabled user, a
changed role, an expired stream token. SSE responses end with a last `event: error` carrying
the error envelope; sockets close with 4401 (4403 for a role change). Other callers' streams go
on."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from streams_support import (
    WITHIN,
    data,
    ended,
    events_of,
    new_project,
    open_sse,
    settled,
    tailer_at,
    told_why,
)

from helix.api.streams import TAILER
from helix.auth import keys
from helix.auth.accounts import Accounts
from helix.auth.principal import Principal
from helix.bootstrap import LogNode
from helix.domain.user import Role
from helix.errors import Forbidden, Unauthorized
from helix.services import Services, system_caller
from helix.streams.credentials import watch_credentials

Client = TestClient[Any, Any]
WS = aiohttp.ClientWebSocketResponse
CALLER = attrs.evolve(system_caller("test"), actor="test", source="pytest")


async def key_id_of(accounts: Accounts, caller: Any) -> uuid.UUID:
    """The id of the key the caller calls with."""
    found = await accounts.list_keys(caller.user.user_id, include_revoked=False)
    [key] = [k for k in found if k.prefix == keys.prefix_of(caller.key)]
    return key.key_id


async def revoke(client: Client, admin: Any, key_id: uuid.UUID) -> None:
    resp = await client.delete(f"/api/v1/auth/api-keys/{key_id}", headers=admin.headers)
    assert resp.status == 200, await resp.text()


async def change_user(client: Client, admin: Any, caller: Any, **body: Any) -> None:
    resp = await client.patch(f"/api/v1/users/{caller.user_id}", json=body, headers=admin.headers)
    assert resp.status == 200, await resp.text()


async def open_socket(client: Client, **kwargs: Any) -> WS:
    ws: WS = await client.ws_connect("/api/v1/ws", **kwargs)
    await ws.send_json({"type": "subscribe", "id": "s", "payload": {"stream": "all"}})
    async with asyncio.timeout(WITHIN):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "caught_up":
                return ws


async def closed(ws: WS, within: float = WITHIN) -> tuple[int | None, str]:
    """The close code and reason of a socket the server closes (failing if it does not in
    time)."""
    async with asyncio.timeout(within):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return ws.close_code, msg.extra or ""
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code, ""


async def project_event(ws: WS) -> dict[str, Any]:
    async with asyncio.timeout(WITHIN):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "event" and message["payload"]["type"] == "project.created":
                return dict(message["payload"])


def watches(app: web.Application) -> int:
    return len(app[TAILER].revocations)


# --- server-sent events -----------------------------------------------------------------------


async def test_revoking_an_api_key_ends_its_event_streams_and_no_other_stream(
    client: Client,
    app: web.Application,
    accounts: Accounts,
    services: Services,
    admin: Any,
    user: Any,
    other_user: Any,
) -> None:
    _, spare_key = await accounts.create_key(user.user.user_id, "spare", caller=CALLER)
    doomed = await open_sse(client, "/api/v1/events/stream", headers=user.headers)
    kept = await open_sse(
        client, "/api/v1/events/stream", headers={"Authorization": f"Bearer {spare_key}"}
    )
    bystander = await open_sse(client, "/api/v1/events/stream", headers=other_user.headers)

    key_id = await key_id_of(accounts, user)
    await revoke(client, admin, key_id)
    late = await ended(doomed)
    project_id = await new_project(services, other_user)
    seen = await bystander.until(lambda m: any(x.event == "project.created" for x in m))
    told = await kept.until(lambda m: any(x.event == "api_key.revoked" for x in m))
    reopened = await client.get("/api/v1/events/stream", headers=user.headers)
    kept.resp.close()
    bystander.resp.close()

    assert told_why(doomed, late, "UNAUTHORIZED") == "the API key has been revoked"
    assert all(m.event != "api_key.revoked" for m in late)  # nothing after the revocation
    assert data(events_of(seen)[-1])["project_id"] == str(project_id)
    # The same user's stream on another key goes on, and is told of the revocation.
    assert data(events_of(told)[-1])["data"]["key_id"] == str(key_id)
    assert reopened.status == 401
    assert (await reopened.json())["error"]["message"] == "the API key has been revoked"


async def test_disabling_a_user_ends_the_stream_they_opened_with_a_stream_token(
    client: Client, admin: Any, user: Any
) -> None:
    resp = await client.post("/api/v1/stream-tokens", headers=user.headers)
    token = (await resp.json())["token"]
    stream = await open_sse(client, f"/api/v1/events/stream?access_token={token}")

    await change_user(client, admin, user, disabled=True)
    late = await ended(stream)
    again = await client.get(f"/api/v1/events/stream?access_token={token}")

    assert told_why(stream, late, "UNAUTHORIZED") == "the user is disabled"
    assert again.status == 401


async def test_a_role_change_ends_a_project_stream_opened_with_a_jwt(
    client: Client,
    app: web.Application,
    services: Services,
    admin: Any,
    user: Any,
    token_for: Any,
) -> None:
    project_id = await new_project(services, user)
    stream = await open_sse(
        client, f"/api/v1/projects/{project_id}/stream", headers=token_for(user)
    )
    assert watches(app) == 1

    await change_user(client, admin, user, role="auditor")
    late = await ended(stream)

    assert told_why(stream, late, "FORBIDDEN") == "the user's role has changed"
    assert watches(app) == 0  # the ended stream no longer waits on the user's events


async def test_a_stream_opened_with_a_stream_token_ends_when_the_token_expires_saying_so(
    make_client: Any, user: Any
) -> None:
    client = await make_client(stream_token_ttl_seconds=1)
    minted = await (await client.post("/api/v1/stream-tokens", headers=user.headers)).json()
    by_token = await open_sse(client, f"/api/v1/events/stream?access_token={minted['token']}")
    by_key = await open_sse(client, "/api/v1/events/stream", headers=user.headers)

    late = await ended(by_token, within=WITHIN + 2)
    await new_project_over_http(client, user)
    kept = await by_key.until(lambda m: any(x.event == "project.created" for x in m))
    by_key.resp.close()

    assert told_why(by_token, late, "UNAUTHORIZED") == "the stream token has expired"
    assert kept[-1].event == "project.created"  # a key does not expire: its stream goes on


async def new_project_over_http(client: Client, caller: Any) -> None:
    resp = await client.post("/api/v1/projects", json={"name": "later"}, headers=caller.headers)
    assert resp.status == 201, await resp.text()


# --- WebSocket --------------------------------------------------------------------------------


async def test_revoking_the_key_of_a_socket_closes_it_with_4401_and_no_other_socket(
    client: Client,
    accounts: Accounts,
    services: Services,
    admin: Any,
    user: Any,
    other_user: Any,
) -> None:
    doomed = await open_socket(client, headers=user.headers)
    bystander = await open_socket(client, headers=other_user.headers)

    await revoke(client, admin, await key_id_of(accounts, user))
    code, reason = await closed(doomed)
    project_id = await new_project(services, other_user)
    event = await project_event(bystander)
    await bystander.close()

    assert (code, reason) == (4401, "the API key has been revoked")
    assert event["project_id"] == str(project_id)


async def test_disabling_the_user_of_a_socket_authenticated_by_message_closes_it_with_4401(
    client: Client, admin: Any, user: Any, token_for: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws")
    jwt = token_for(user)["Authorization"]
    await ws.send_json({"type": "auth", "payload": {"token": jwt}})
    ack = json.loads((await ws.receive(timeout=WITHIN)).data)
    assert ack["type"] == "connection_ack"

    await change_user(client, admin, user, disabled=True)

    assert await closed(ws) == (4401, "the user is disabled")


async def test_a_role_change_closes_the_users_sockets_with_4403(
    client: Client, admin: Any, user: Any
) -> None:
    ws = await open_socket(client, headers=user.headers)

    await change_user(client, admin, user, role="admin")

    assert await closed(ws) == (4403, "the user's role has changed")


async def test_a_socket_authenticated_with_a_stream_token_closes_with_4401_when_it_expires(
    make_client: Any, user: Any
) -> None:
    client = await make_client(stream_token_ttl_seconds=1)
    minted = await (await client.post("/api/v1/stream-tokens", headers=user.headers)).json()
    ws = await client.ws_connect("/api/v1/ws")
    await ws.send_json({"type": "auth", "payload": {"token": minted["token"]}})
    ack = json.loads((await ws.receive(timeout=WITHIN)).data)

    assert ack["type"] == "connection_ack"
    assert await closed(ws, within=WITHIN + 2) == (4401, "the stream token has expired")


# --- the check at registration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "refused"),
    [("revoke", Unauthorized), ("disable", Unauthorized), ("role", Forbidden)],
)
async def test_credentials_revoked_before_a_stream_registers_are_refused_at_registration(
    client: Client,
    app: web.Application,
    node: LogNode,
    accounts: Accounts,
    user: Any,
    change: str,
    refused: type[Exception],
) -> None:
    # The principal as the auth middleware saw it, before the change reached the tailer.
    key_id = await key_id_of(accounts, user)
    principal = Principal(
        user_id=user.user.user_id, username=user.user.username, role=Role.USER, key_id=key_id
    )
    if change == "revoke":
        await accounts.revoke_key(key_id, owner=None, caller=CALLER)
    elif change == "disable":
        await accounts.update_user(user.user.user_id, disabled=True, caller=CALLER)
    else:
        await accounts.update_user(user.user.user_id, role=Role.AUDITOR, caller=CALLER)
    await tailer_at(app[TAILER], await settled(node.store.pool))  # it has been fanned out
    calls: list[object] = []

    with pytest.raises(refused):
        await watch_credentials(app[TAILER], principal, calls.append)

    assert watches(app) == 0
    assert calls == []
