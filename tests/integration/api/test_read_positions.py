"""Every REST read reports the log position it reflects (`X-Helix-Position`), so a client can
read, then subscribe from there with nothing missed and nothing twice."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.client.sse import Parser
from helix.config import Settings
from helix.eventstore import ANY_VERSION, EncodedEvent
from helix.webhooks.dispatcher import Dispatcher
from tests.support import settled

Client = TestClient[Any, Any]
HEADER = "X-Helix-Position"
# GET routes under /api/v1 that read no read model, and so carry no position. (Health checks
# and metrics live outside /api/v1.)
NOT_READS = {
    "/api/v1/openapi.json": "the API's description",
    "/api/v1/events/stream": "a live stream",
    "/api/v1/projects/{project_id}/stream": "a live stream",
    "/api/v1/stream/{job_id}": "a live stream",
    "/api/v1/ws": "a WebSocket",
    "/api/v1/jobs/{job_id}/context": "the leaseholder's read (test_workers_api), under a lease",
    "/api/v1/jobs/{job_id}/files/{path}": "a stored file's bytes (test_artifacts), not a view",
}
PLAN = [{"name": "plan"}]


@pytest.fixture
def settings() -> Settings:
    return Settings(
        sequencer_poll_interval=0.2,
        wakeup_interval=0.001,
        rate_limit_per_minute=0,
        webhook_allowed_networks=("127.0.0.0/8",),
    )


async def created(client: Client, who: Any, path: str, body: Any = None, key: str = "id") -> str:
    resp = await client.post(path, json=body, headers=who.headers)
    assert resp.status in (200, 201, 202), (path, await resp.text())
    return str((await resp.json())[key])


def tick(kind: str, n: int) -> EncodedEvent:
    return EncodedEvent(type=f"test.{kind}", schema_version=1, data={"n": n})


def read_routes(app: web.Application) -> dict[str, web.AbstractResource]:
    """Every GET route under /api/v1, by its path template."""
    return {
        route.resource.canonical: route.resource
        for route in app.router.routes()
        if route.method == "GET"
        and route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
    }


def position_of(resp: Any) -> int:
    raw = resp.headers.get(HEADER)
    assert raw is not None and re.fullmatch(r"\d+", raw), (resp.url.path, raw)
    return int(raw)


async def first_event_after(client: Client, who: Any, after: int, types: str) -> dict[str, Any]:
    """The first event a subscriber from `after` receives."""
    resp = await client.get(
        f"/api/v1/events/stream?after={after}&type={types}", headers=who.headers
    )
    parser = Parser()
    try:
        async with asyncio.timeout(10):
            while True:
                message = parser.feed_line((await resp.content.readline()).decode().rstrip("\n"))
                if message is not None and message.event != "caught_up":
                    return dict(json.loads(message.data))
    finally:
        resp.close()


async def test_every_read_under_api_v1_reports_the_log_position_it_reflects(
    client: Client, app: web.Application, node: LogNode, admin: Any, worker: Any
) -> None:
    project_id = await created(client, admin, "/api/v1/projects", {"name": "p", "phases": PLAN})
    await created(client, admin, f"/api/v1/projects/{project_id}/ready")
    job_id = await created(client, admin, f"/api/v1/projects/{project_id}/execute", key="job_id")
    await created(client, admin, f"/api/v1/projects/{project_id}/messages", {"content": "hi"})
    endpoint_id = await created(client, admin, "/api/v1/webhooks", {"url": "http://127.0.0.1:9/"})
    delivery_id = await created(client, admin, f"/api/v1/webhooks/{endpoint_id}/test")
    worker_id = await created(
        client, worker, "/api/v1/workers/register", {"capabilities": ["shell"]}, key="worker_id"
    )
    ids = {
        "project_id": project_id,
        "job_id": job_id,
        "user_id": admin.user_id,
        "endpoint_id": endpoint_id,
        "delivery_id": delivery_id,
        "worker_id": worker_id,
        "position": str(await settled(node)),
    }
    routes = read_routes(app)

    stamped = {}
    for path, resource in sorted(routes.items()):
        if path in NOT_READS:
            continue
        names = re.findall(r"{(\w+)", path)
        missing = [n for n in names if n not in ids]
        assert not missing, f"{path}: create a resource for {missing} in this test"
        url = resource.url_for(**{n: ids[n] for n in names})
        resp = await client.get(url, headers=admin.headers)
        assert resp.status == 200, (path, await resp.text())
        assert resp.content_type == "application/json", path
        stamped[path] = position_of(resp)

    assert set(NOT_READS) <= set(routes)  # the exceptions name real routes
    assert {"/api/v1/users/me", "/api/v1/auth/api-keys", "/api/v1/events"} <= set(stamped)
    assert all(at >= 0 for at in stamped.values())


async def test_reading_a_user_then_subscribing_from_its_position_gets_the_next_change_only(
    client: Client, node: LogNode, admin: Any, user: Any
) -> None:
    await settled(node)
    read = await client.get(f"/api/v1/users/{user.user_id}", headers=admin.headers)
    at = position_of(read)
    changed = await client.patch(
        f"/api/v1/users/{user.user_id}", json={"role": "auditor"}, headers=admin.headers
    )

    first = await first_event_after(client, admin, at, "user.*")

    assert changed.status == 200 and position_of(changed) >= at
    assert (await read.json())["role"] == "user"
    assert (first["type"], first["data"]["to_role"]) == ("user.role_changed", "auditor")


async def test_a_short_page_of_the_log_reports_the_head_and_a_full_page_its_last_event(
    client: Client, node: LogNode, admin: Any
) -> None:
    store = node.store
    await store.append("test-a", ANY_VERSION, [tick("a", 1), tick("a", 2)])
    await store.append("test-b", ANY_VERSION, [tick("b", 3)])
    head = await settled(node)

    short = await client.get("/api/v1/events?type=test.a", headers=admin.headers)
    full = await client.get("/api/v1/events?type=test.a&limit=1", headers=admin.headers)
    one = await client.get(f"/api/v1/events/{head - 1}", headers=admin.headers)
    await store.append("test-a", ANY_VERSION, [tick("a", 4)])
    after_short = await first_event_after(client, admin, position_of(short), "test.a")

    page, full_page = await short.json(), await full.json()
    assert [e["data"]["n"] for e in page["items"]] == [1, 2]
    assert page["items"][-1]["position"] == head - 1  # paging goes on from the last event...
    assert position_of(short) == head  # ...but everything up to the head was read
    assert full_page["next"] == f"/api/v1/events?type=test.a&limit=1&after={head - 2}"
    assert position_of(full) == full_page["items"][-1]["position"] == head - 2
    assert position_of(one) == head - 1  # one event: nothing after it was read
    assert after_short["data"] == {"n": 4}


async def test_deliveries_report_the_dispatchers_checkpoint_not_the_head(
    client: Client, node: LogNode, settings: Settings, admin: Any
) -> None:
    endpoint_id = await created(client, admin, "/api/v1/webhooks", {"url": "http://127.0.0.1:9/"})
    path = f"/api/v1/webhooks/{endpoint_id}/deliveries"
    head = await settled(node)

    before = await client.get(path, headers=admin.headers)
    endpoint = await client.get(f"/api/v1/webhooks/{endpoint_id}", headers=admin.headers)
    dispatcher = Dispatcher(node.store, settings)
    async with asyncio.timeout(10):
        while dispatcher.position < head:
            await dispatcher.dispatch_once()
    checkpoint = await node.store.pool.fetchval("SELECT position FROM webhook_dispatcher")
    after = await client.get(path, headers=admin.headers)

    assert position_of(endpoint) == head  # an endpoint is kept inline with its events
    assert position_of(before) == 0  # no event has been dispatched yet
    assert position_of(after) == checkpoint == head
