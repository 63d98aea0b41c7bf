"""Every route of the running API, fed arbitrary bodies and query strings: never a 5xx, and a
request that is refused (a 4xx) appends no event.

The routes come from the server's own OpenAPI document. Path parameters are real ids of the
callers' resources and of another user's, unknown UUIDs, or arbitrary text. A body is arbitrary
JSON; or a value of the route's request schema, as it is or with one field replaced by arbitrary
JSON, to get past the first check into the handler; or bytes that are not JSON at all. Callers
are a user, an admin, a worker, an auditor and nobody. The WebSocket gets arbitrary messages
the same way: it answers them or closes with one of its own 44xx codes, never otherwise.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import event, given
from hypothesis import strategies as st

from helix.api.workers import OPTIONAL, REPORTS
from helix.bootstrap import LogNode
from tests.support import bounded

Client = TestClient[Any, Any]
BODY_METHODS = ("POST", "PATCH", "PUT")
# A failed login is recorded, by design: the one event a refused request may append.
RECORDED_REFUSALS = {("POST", "/api/v1/auth/login"): {"auth.login_failed"}}
PARAMS = [
    "after", "limit", "offset", "since", "until", "as_of", "type", "types", "actor",
    "stream_id", "project_id", "project_type", "status", "archived", "phase", "wait", "online",
    "role", "user_id", "include_revoked", "follow", "access_token",
]  # fmt: skip
ODD_STRINGS = [
    "", "0", "-1", "1", "9" * 30, "1e400", "nan", "inf", "-0", "true", "false", "all", "null",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-31T12:00:00Z",
    "2026-01-31T12:00:00", "00000000-0000-0000-0000-000000000000", "job.*", "*", "*?*?*?a",
    "a\x00b", "%00", "../", "user", "admin", "queued", "running", "https://example.com/h",
    "http://127.0.0.1/", "project:all", "build", "shell",
]  # fmt: skip


@attrs.frozen
class Operation:
    method: str
    path: str
    schema: dict[str, Any] | None


@attrs.frozen(kw_only=True)
class World:
    """What the requests are about: real resources, and the callers with their headers."""

    operations: tuple[Operation, ...]
    ids: dict[str, tuple[str, ...]]
    callers: tuple[dict[str, str], ...]
    fencing_token: int


async def created(resp: Any, status: int = 201) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


@pytest.fixture
async def fuzzed(make_client: Callable[..., Awaitable[Client]]) -> Client:
    # No rate limit to run into; claims that long-poll give up at once.
    return await make_client(rate_limit_per_minute=0, claim_max_wait=0.2)


@pytest.fixture
async def world(
    fuzzed: Client,
    make_caller: Callable[..., Awaitable[Any]],
    user: Any,
    other_user: Any,
    admin: Any,
    worker: Any,
    auditor: Any,
) -> World:
    client = fuzzed
    running = await run(client, user)
    queued = await run(client, user)
    theirs = await created(
        await client.post("/api/v1/projects", json={"name": "q"}, headers=other_user.headers)
    )
    registered = await created(
        await client.post(
            "/api/v1/workers/register", json={"capabilities": ["shell"]}, headers=worker.headers
        )
    )
    held = await created(
        await client.post(
            f"/api/v1/workers/{registered['worker_id']}/claim", headers=worker.headers
        ),
        200,
    )
    assert held["job"]["id"] == running["job_id"]
    hook = await created(
        await client.post(
            "/api/v1/webhooks", json={"url": "https://example.com/h"}, headers=user.headers
        )
    )
    ping = await created(
        await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=user.headers), 202
    )
    spare_key = await created(
        await client.post("/api/v1/auth/api-keys", json={"name": "spare"}, headers=user.headers)
    )
    victim = await make_caller("user")
    document = await (await client.get("/api/v1/openapi.json")).json()
    operations = []
    for path, methods in sorted(document["paths"].items()):
        for method, operation in sorted(methods.items()):
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            operations.append(Operation(method.upper(), path, body["schema"] if body else None))
    unknown = str(uuid.UUID(int=1))
    return World(
        operations=tuple(operations),
        ids={
            "project_id": (running["project_id"], theirs["id"], unknown),
            "job_id": (running["job_id"], queued["job_id"], unknown),
            "worker_id": (registered["worker_id"], unknown),
            "endpoint_id": (hook["id"], unknown),
            "delivery_id": (ping["id"], unknown),
            "key_id": (spare_key["id"], unknown),
            "user_id": (victim.user_id, unknown),
            "position": ("1", "3", str(2**63)),
        },
        callers=(
            user.headers,
            admin.headers,
            worker.headers,
            auditor.headers,
            {},
        ),
        fencing_token=held["lease"]["fencing_token"],
    )


async def run(client: Client, who: Any) -> Any:
    """A project of one shell phase, executed: its job is queued."""
    plan = {"name": "p", "phases": [{"name": "build", "command": ["make"]}]}
    project = await created(await client.post("/api/v1/projects", json=plan, headers=who.headers))
    await client.post(f"/api/v1/projects/{project['id']}/ready", headers=who.headers)
    return await created(
        await client.post(f"/api/v1/projects/{project['id']}/execute", headers=who.headers), 202
    )


# Text a client can put in a URL: anything with a UTF-8 form (NUL and control characters too).
url_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
strings = st.one_of(
    st.text(max_size=16),
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Co"]), max_size=4),
    st.sampled_from(ODD_STRINGS),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)
queries = st.dictionaries(
    st.sampled_from(PARAMS) | url_text,
    st.sampled_from(ODD_STRINGS) | url_text,
    max_size=4,
)


def shaped(schema: dict[str, Any], world: World) -> st.SearchStrategy[Any]:
    """Values of a request schema, mostly valid: enough to get past the first check. (The
    schemas use a small part of JSON Schema: types, enums, properties, items, lengths, bounds,
    uuid and pattern.)"""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return st.one_of([shaped({**schema, "type": kind}, world) for kind in kinds])
    if kinds == "object":
        properties = {k: shaped(v, world) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: v for k, v in properties.items() if k in required},
            optional={k: v for k, v in properties.items() if k not in required},
        )
    if kinds == "array":
        low = schema.get("minItems", 0)
        items = shaped(schema.get("items", {}), world)
        return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", 3), 3)))
    if kinds == "string":
        if schema.get("format") == "uuid":
            return st.sampled_from([i for ids in world.ids.values() for i in ids]) | st.uuids().map(
                str
            )
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low = schema.get("minLength", 0)
        text = st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 20), 20)))
        return text | st.sampled_from(ODD_STRINGS)
    if kinds == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        small = [n for n in (0, 1, 2) if (low is None or n >= low) and (high is None or n <= high)]
        return st.integers(low, high) | st.sampled_from(small or [low])
    if kinds == "number":
        return st.floats(
            schema.get("minimum", schema.get("exclusiveMinimum")),
            schema.get("maximum"),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kinds == "boolean":
        return st.booleans()
    if kinds == "null":
        return st.none()
    return json_values


@st.composite
def one_field_replaced(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> Any:
    value = draw(values)
    if isinstance(value, dict) and value:
        key = draw(st.sampled_from(sorted(value)))
        value = {**value, key: draw(json_values)}
    return value


def report_batches(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """Batches of reports on the held job, each report shaped by its type's fields (the
    request schema only says that a report is an object)."""

    def report(kind: str) -> st.SearchStrategy[Any]:
        fields = REPORTS[kind]
        schema = {
            "type": "object",
            "required": [name for name in fields if name not in OPTIONAL],
            "properties": {"type": {"enum": [kind]}, **fields},
        }
        return shaped(schema, world)

    reports = st.sampled_from(sorted(REPORTS)).flatmap(report)
    return st.fixed_dictionaries(
        {
            "fencing_token": st.just(world.fencing_token) | st.integers(0, 3),
            "reports": st.lists(reports, max_size=4) | st.lists(json_values, max_size=2),
        }
    )


def bodies(operation: Operation, world: World) -> st.SearchStrategy[bytes | None]:
    encoded = json_values.map(lambda v: json.dumps(v).encode())
    choices: list[st.SearchStrategy[bytes | None]] = [
        st.none(),
        encoded,
        st.binary(max_size=24),
        st.just(b'{"a":' * 2000 + b"1" + b"}" * 2000),
    ]
    if operation.path == "/api/v1/jobs/{job_id}/reports":
        choices.append(report_batches(world).map(lambda v: json.dumps(v).encode()))
    if operation.schema is not None:
        valid = shaped(operation.schema, world)
        choices += [
            valid.map(lambda v: json.dumps(v).encode()),
            one_field_replaced(valid).map(lambda v: json.dumps(v).encode()),
        ]
    return st.one_of(choices)


def paths(template: str, world: World) -> st.SearchStrategy[str]:
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    if not names:
        return st.just(template)

    def each(name: str) -> st.SearchStrategy[str]:
        known = st.sampled_from(world.ids.get(name, ("x",)))
        return known | url_text.map(lambda t: urllib.parse.quote(t, safe=""))

    def fill(values: tuple[str, ...]) -> str:
        path = template
        for name, value in zip(names, values, strict=True):
            path = path.replace("{" + name + "}", value)
        return path

    return st.tuples(*(each(n) for n in names)).map(fill)


async def last_event(node: LogNode) -> int:
    found: int = await node.store.pool.fetchval("SELECT coalesce(max(id), 0) FROM events")
    return found


async def types_after(node: LogNode, after: int) -> set[str]:
    rows = await node.store.pool.fetch("SELECT type FROM events WHERE id > $1", after)
    return {r["type"] for r in rows}


@bounded(examples=400)
@given(data=st.data())
async def test_no_route_answers_arbitrary_input_with_a_5xx_nor_changes_anything_refusing_it(
    fuzzed: Client, node: LogNode, world: World, data: st.DataObject
) -> None:
    operation = data.draw(st.sampled_from(world.operations), label="operation")
    path = data.draw(paths(operation.path, world), label="path")
    query = data.draw(queries, label="query")
    body = (
        data.draw(bodies(operation, world), label="body")
        if operation.method in BODY_METHODS
        else None
    )
    headers = dict(data.draw(st.sampled_from(world.callers), label="caller"))
    if body is not None:
        headers["Content-Type"] = "application/json"
    before = await last_event(node)

    async with fuzzed.request(
        operation.method, path, params=query, data=body, headers=headers
    ) as resp:
        status = resp.status
        streaming = resp.headers.get("Content-Type", "").startswith("text/event-stream")
        text = "" if streaming else await resp.text()

    event(f"{status // 100}xx")
    assert status < 500, (operation.method, path, query, body, text[:500])
    if 400 <= status < 500:
        envelope = json.loads(text)
        assert set(envelope) == {"error", "request_id"}, text[:500]
        allowed = RECORDED_REFUSALS.get((operation.method, operation.path), set())
        appended = await types_after(node, before)
        assert appended <= allowed, (operation.method, path, query, body, status, appended)


STREAM_CLOSE_CODES = {4400, 4401, 4403, 4429}


def socket_messages(world: World) -> st.SearchStrategy[str | bytes]:
    """Arbitrary JSON, text that is not JSON, binary frames, and messages of the protocol's
    shape with arbitrary payloads."""
    ids = [i for name in ("project_id", "job_id") for i in world.ids[name]]
    streams = st.sampled_from(["all", *(f"job:{i}" for i in ids), *(f"project:{i}" for i in ids)])
    payload = st.fixed_dictionaries(
        {},
        optional={
            "stream": streams | strings,
            "after": st.integers() | json_values,
            "types": st.lists(strings, max_size=3) | json_values,
            "follow": json_values,
            "token": strings,
        },
    )
    shaped_message = st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "complete", "auth", "ping", "pong"]) | strings},
        optional={"id": strings | json_values, "payload": payload | json_values},
    )
    return st.one_of(
        json_values.map(json.dumps),
        shaped_message.map(json.dumps),
        url_text,
        st.binary(max_size=16),
        st.just('{"type": "ping", "payload": ' + "[" * 5000 + "]" * 5000 + "}"),
    )


@bounded(examples=100)
@given(data=st.data())
async def test_no_websocket_message_breaks_the_socket_nor_changes_anything(
    fuzzed: Client, node: LogNode, world: World, data: st.DataObject
) -> None:
    message = data.draw(socket_messages(world), label="message")
    headers = data.draw(st.sampled_from(world.callers), label="caller")
    before = await last_event(node)

    ws = await fuzzed.ws_connect("/api/v1/ws", headers=headers)
    if isinstance(message, bytes):
        await ws.send_bytes(message)
    else:
        await ws.send_str(message)
    # A ping after it: answered by a pong, unless the message closed the socket.
    await ws.send_str('{"type": "ping", "payload": "last"}')
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        answer = json.loads(msg.data)
        if answer == {"type": "pong", "payload": "last"}:
            break
    await ws.close()

    if ws.close_code not in (None, 1000):
        assert ws.close_code in STREAM_CLOSE_CODES, (message, ws.close_code)
    assert await types_after(node, before) == set()
