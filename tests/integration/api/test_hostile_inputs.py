"""Inputs that used to crash a handler: each is a 4xx in the error envelope and appends nothing.

Deeply nested JSON, numbers that cannot be stored, lone surrogates and undecodable bytes (in
bodies and in headers), NUL in query filters, and times whose UTC conversion leaves the
calendar, on the routes where they were found.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.inputs import MAX_DEPTH

Client = TestClient[Any, Any]


async def events_in(node: LogNode) -> int:
    count: int = await node.store.pool.fetchval("SELECT count(*) FROM events")
    return count


@pytest.fixture
async def unchanged(node: LogNode) -> AsyncIterator[None]:
    """The test's requests append no event (counted before and after, sequenced or not)."""
    before = await events_in(node)
    yield
    assert await events_in(node) == before


async def refused(resp: Any, *statuses: int) -> dict[str, Any]:
    """The response is one of `statuses` (a 4xx), in the envelope; returns the error."""
    text = await resp.text()
    assert resp.status in statuses, (resp.status, text[:300])
    body = json.loads(text)
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return dict(body["error"])


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


async def new_project(client: Client, who: Any, phases: list[dict[str, Any]] | None = None) -> str:
    body: dict[str, Any] = {"name": "p"} if phases is None else {"name": "p", "phases": phases}
    resp = await client.post("/api/v1/projects", json=body, headers=who.headers)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def queued_job(client: Client, who: Any, project: str) -> str:
    await client.post(f"/api/v1/projects/{project}/ready", headers=who.headers)
    resp = await client.post(f"/api/v1/projects/{project}/execute", headers=who.headers)
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["job_id"])


async def post_raw(client: Client, path: str, body: bytes | str, who: Any) -> Any:
    data = body.encode() if isinstance(body, str) else body
    headers = {**who.headers, "Content-Type": "application/json"}
    return await client.post(path, data=data, headers=headers)


# --- deeply nested JSON ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
async def test_json_nested_too_deeply_is_refused_on_every_kind_of_json_route(
    client: Client, node: LogNode, admin: Any, user: Any, unchanged: None, depth: int
) -> None:
    deep = nested(depth)
    attempts = [
        ("/api/v1/projects", f'{{"name": "p", "description": {deep}}}', user),
        ("/api/v1/users", f'{{"username": "u", "role": {deep}}}', admin),
        ("/api/v1/auth/login", f'{{"username": {deep}, "password": "x"}}', user),
        ("/api/v1/webhooks", f'{{"url": {deep}}}', user),
        ("/api/v1/projects", deep, user),
    ]
    for path, body, who in attempts:
        error = await refused(await post_raw(client, path, body, who), 422)
        assert error["details"]["max_depth"] == MAX_DEPTH, path


async def test_json_at_the_depth_limit_is_accepted(client: Client, worker: Any) -> None:
    # The body object itself is one level; `resources` and what it holds the others.
    resources = "{" + '"a": {' * (MAX_DEPTH - 2) + '"b": 1' + "}" * (MAX_DEPTH - 1)
    body = f'{{"capabilities": ["shell"], "resources": {resources}}}'

    resp = await post_raw(client, "/api/v1/workers/register", body, worker)

    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("depth", [MAX_DEPTH, 900, 5_000])
async def test_worker_resources_nested_too_deeply_are_refused_at_register_and_heartbeat(
    client: Client, node: LogNode, worker: Any, depth: int
) -> None:
    resp = await client.post(
        "/api/v1/workers/register", json={"capabilities": ["shell"]}, headers=worker.headers
    )
    worker_id = (await resp.json())["worker_id"]
    resources = "{" + '"a": {' * (depth - 1) + '"b": 1' + "}" * depth
    before = await events_in(node)

    register = await post_raw(
        client,
        "/api/v1/workers/register",
        f'{{"capabilities": ["shell"], "resources": {resources}}}',
        worker,
    )
    beat = await post_raw(
        client,
        "/api/v1/workers/heartbeat",
        f'{{"worker_id": "{worker_id}", "resources": {resources}}}',
        worker,
    )

    await refused(register, 422)
    await refused(beat, 422)
    assert await events_in(node) == before


async def test_a_websocket_message_nested_too_deeply_gets_an_error_and_closes_4400(
    client: Client, admin: Any
) -> None:
    for depth in (MAX_DEPTH + 1, 100_000):
        ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
        await ws.send_str(f'{{"type": "ping", "payload": {nested(depth)}}}')

        reply = await ws.receive(timeout=20)
        assert reply.type is aiohttp.WSMsgType.TEXT, reply
        message = json.loads(reply.data)
        assert message["type"] == "error"
        assert message["payload"]["code"] == "VALIDATION_ERROR"
        closed = await ws.receive(timeout=20)
        assert closed.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4400


# --- numbers -------------------------------------------------------------------------------


async def test_numbers_that_cannot_be_stored_are_refused(
    client: Client, worker: Any, unchanged: None
) -> None:
    attempts = [
        ('{"capabilities": ["shell"], "resources": {"cpus": NaN}}', 400),
        ('{"capabilities": ["shell"], "resources": {"cpus": -Infinity}}', 400),
        ('{"capabilities": ["shell"], "resources": {"cpus": 1e999}}', 422),
        ('{"capabilities": ["shell"], "resources": {"cpus": 9223372036854775808}}', 422),
        ('{"capabilities": ["shell"], "resources": {"cpus": ' + "9" * 5000 + "}}", 422),
    ]
    for body, status in attempts:
        await refused(await post_raw(client, "/api/v1/workers/register", body, worker), status)


# --- worker reports ------------------------------------------------------------------------


@pytest.fixture
async def claimed(client: Client, user: Any, worker: Any) -> tuple[str, int]:
    """A job a worker holds, with its first phase started: (job id, fencing token)."""
    resp = await client.post(
        "/api/v1/workers/register", json={"capabilities": ["shell"]}, headers=worker.headers
    )
    worker_id = (await resp.json())["worker_id"]
    project = await new_project(client, user, [{"name": "build", "command": ["make"]}])
    await queued_job(client, user, project)
    resp = await client.post(f"/api/v1/workers/{worker_id}/claim", headers=worker.headers)
    assert resp.status == 200, await resp.text()
    claim = await resp.json()
    job, token = claim["job"]["id"], claim["lease"]["fencing_token"]
    started = {"fencing_token": token, "reports": [{"type": "phase_started", "phase": "build"}]}
    resp = await client.post(f"/api/v1/jobs/{job}/reports", json=started, headers=worker.headers)
    assert resp.status == 200, await resp.text()
    return job, token


@pytest.mark.parametrize(
    ("reports", "field"),
    [
        (
            [{"type": "phase_failed", "phase": "build", "exit_code": -(2**40), "error": "x"}],
            "exit_code",
        ),
        (
            [{"type": "phase_failed", "phase": "build", "exit_code": 2**31, "error": "x"}],
            "exit_code",
        ),
        ([{"type": "cost", "phase": "build", "tokens": 2**62}] * 2, "tokens"),
        ([{"type": "cost", "phase": "build", "tokens": 0, "usd": 1e308}] * 2, "usd"),
    ],
)
async def test_reports_the_read_models_cannot_hold_are_refused(
    client: Client,
    node: LogNode,
    worker: Any,
    claimed: tuple[str, int],
    reports: list[dict[str, Any]],
    field: str,
) -> None:
    job, token = claimed
    before = await events_in(node)

    resp = await client.post(
        f"/api/v1/jobs/{job}/reports",
        json={"fencing_token": token, "reports": reports},
        headers=worker.headers,
    )

    error = await refused(resp, 422)
    assert error["details"]["field"].endswith(field)
    assert await events_in(node) == before


# --- lone surrogates and undecodable bytes --------------------------------------------------


async def test_a_lone_surrogate_escape_in_a_string_field_is_a_422(
    client: Client, node: LogNode, user: Any, admin: Any
) -> None:
    project = await new_project(client, user)
    env = '{"name": "p", "phases": [{"name": "a", "env": {"K": "\\udfff"}}]}'
    attempts = [
        ("/api/v1/projects", '{"name": "x\\ud800"}', user),
        ("/api/v1/projects", env, user),
        ("/api/v1/projects", '{"name": "p", "\\ud800": 1}', user),
        ("/api/v1/users", '{"username": "u\\ud800"}', admin),
        (f"/api/v1/projects/{project}/messages", '{"content": "hi \\ud83d"}', user),
    ]
    before = await events_in(node)
    for path, body, who in attempts:
        error = await refused(await post_raw(client, path, body, who), 422)
        assert "surrogate" in error["message"], path
    assert await events_in(node) == before


async def test_a_surrogate_pair_escape_is_an_ordinary_character(client: Client, user: Any) -> None:
    resp = await post_raw(client, "/api/v1/projects", '{"name": "rocket \\ud83d\\ude80"}', user)

    assert resp.status == 201, await resp.text()
    assert (await resp.json())["name"] == "rocket \U0001f680"


async def test_raw_bytes_that_are_not_utf8_in_a_body_are_a_400(
    client: Client, user: Any, unchanged: None
) -> None:
    for raw in (b'{"name": "x\xed\xa0\x80"}', b'{"name": "\xff"}', b'{"name": "\xc3"}'):
        error = await refused(await post_raw(client, "/api/v1/projects", raw, user), 400)
        assert "UTF-8" in error["message"]


@pytest.mark.parametrize(
    "message",
    [
        '{"type": "subscribe", "id": "s\\ud800", "payload": {"stream": "all"}}',
        '{"type": "ping", "payload": {"\\ud800": 1}}',  # named in the close reason, escaped
    ],
)
async def test_a_websocket_message_with_a_lone_surrogate_gets_an_error_and_closes_4400(
    client: Client, admin: Any, message: str
) -> None:
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    await ws.send_str(message)

    reply = await ws.receive(timeout=20)
    assert reply.type is aiohttp.WSMsgType.TEXT, reply
    assert json.loads(reply.data)["type"] == "error"
    assert (await ws.receive(timeout=20)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4400


async def test_a_websocket_text_frame_that_is_not_utf8_closes_with_the_protocols_1007(
    client: Client, admin: Any
) -> None:
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    await ws.send_frame(b'{"type": "ping", "payload": "\xed\xa0\x80"}', aiohttp.WSMsgType.TEXT)

    closed = await ws.receive(timeout=20)

    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == aiohttp.WSCloseCode.INVALID_TEXT


# --- headers -------------------------------------------------------------------------------


def credentials_line(who: Any) -> bytes:
    return b"Authorization: Bearer " + who.key.encode() + b"\r\n"


async def raw_request(client: Client, head: bytes) -> tuple[int, dict[str, Any]]:
    """Sends a request's bytes as they are (aiohttp's client would refuse to) and returns the
    status and JSON body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "header",
    [
        b"Idempotency-Key: k\xed\xa0\x80",
        b"X-API-Key: hx_\xed\xa0\x80",
        b"Authorization: Bearer hx_\xed\xa0\x80",
        b"Authorization: Bearer eyJ\xed\xa0\x80.e30.x",
    ],
)
async def test_undecodable_bytes_in_a_header_helix_reads_are_a_4xx(
    client: Client, user: Any, unchanged: None, header: bytes
) -> None:
    body = b'{"name": "p"}'
    own = header.startswith((b"X-API-Key", b"Authorization"))
    credentials = b"" if own else credentials_line(user)
    head = (
        b"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + credentials
        + header
        + b"\r\nContent-Type: application/json\r\n"
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )

    status, answer = await raw_request(client, head)

    assert 400 <= status < 500, answer
    assert set(answer) == {"error", "request_id"}


async def test_an_undecodable_request_id_header_is_replaced(client: Client, user: Any) -> None:
    head = (
        b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + credentials_line(user)
        + b"X-Request-ID: r\xed\xa0\x80\r\n\r\n"
    )

    status, answer = await raw_request(client, head)

    assert status == 200
    assert answer["username"] == "alice"


# --- NUL in query filters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/events", "actor"),
        ("/api/v1/events", "stream_id"),
        ("/api/v1/events", "type"),
        ("/api/v1/projects", "project_type"),
        ("/api/v1/jobs/{job}/output", "phase"),
        ("/api/v1/projects/{project}/history", "after"),
        ("/api/v1/users/me", "unknown"),
    ],
)
async def test_nul_in_a_query_parameter_is_a_422_naming_it(
    client: Client, node: LogNode, user: Any, path: str, name: str
) -> None:
    project = await new_project(client, user)
    job = await queued_job(client, user, project)
    before = await events_in(node)

    url = path.format(project=project, job=job)
    resp = await client.get(f"{url}?{name}=a%00b", headers=user.headers)

    error = await refused(resp, 422)
    assert error["details"]["field"] == name
    assert "NUL" in error["message"]
    assert await events_in(node) == before


async def test_nul_in_a_query_parameter_name_is_a_422(client: Client, user: Any) -> None:
    resp = await client.get("/api/v1/events?ac%00tor=x", headers=user.headers)

    await refused(resp, 422)


# --- times out of range ---------------------------------------------------------------------

LONG_AGO = "0001-01-01T00:00:00+14:00"
FAR_AHEAD = "9999-12-31T23:59:59-14:00"


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/api/v1/events", "since", LONG_AGO),
        ("/api/v1/events", "until", FAR_AHEAD),
        ("/api/v1/projects/{project}", "as_of", LONG_AGO),
        ("/api/v1/projects/{project}", "as_of", FAR_AHEAD),
        ("/api/v1/jobs/{job}", "as_of", LONG_AGO),
        ("/api/v1/jobs/{job}", "as_of", FAR_AHEAD),
    ],
)
async def test_a_time_whose_utc_conversion_overflows_is_a_422_in_every_time_filter(
    client: Client, node: LogNode, user: Any, path: str, name: str, value: str
) -> None:
    project = await new_project(client, user)
    job = await queued_job(client, user, project)
    before = await events_in(node)

    url = path.format(project=project, job=job)
    resp = await client.get(url, params={name: value}, headers=user.headers)

    error = await refused(resp, 422)
    assert error["details"]["field"] == name
    assert await events_in(node) == before


@pytest.mark.parametrize(
    ("suffix", "body", "name"),
    [
        ("/replay", {"since_time": LONG_AGO}, "since_time"),
        ("/replay", {"since_time": FAR_AHEAD}, "since_time"),
        ("/recover", {"since": LONG_AGO}, "since"),
        ("/recover", {"since": "2026-01-01T00:00:00Z", "until": FAR_AHEAD}, "until"),
        ("/replay", {"since_time": "2026-01-01T00:00:00"}, "since_time"),  # which instant?
    ],
)
async def test_webhook_replay_and_recover_refuse_times_out_of_range(
    client: Client, node: LogNode, user: Any, suffix: str, body: dict[str, str], name: str
) -> None:
    resp = await client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/hook"}, headers=user.headers
    )
    assert resp.status == 201, await resp.text()
    endpoint = (await resp.json())["id"]
    before = await events_in(node)

    resp = await client.post(
        f"/api/v1/webhooks/{endpoint}{suffix}", json=body, headers=user.headers
    )

    error = await refused(resp, 422)
    assert error["details"]["field"] == name
    deliveries = await node.store.pool.fetchval("SELECT count(*) FROM webhook_deliveries")
    assert deliveries == 0
    assert await events_in(node) == before
