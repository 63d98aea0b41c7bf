"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

import helix
from helix.api.app import create_app, create_probe_app
from helix.bootstrap import LogNode
from helix.eventstore import EncodedEvent
from projections import registry
from projections.runner import ProjectionRunner


async def test_healthz_answers_without_credentials(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")

    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["version"] == helix.__version__
    assert isinstance(body["uptime_s"], float) and body["uptime_s"] >= 0


async def test_readyz_reports_the_database_migrations_and_sequencer(
    client: TestClient[Any, Any], node: LogNode
) -> None:
    assert node.sequencer is not None
    for _ in range(100):  # the sequencer takes its lock just after the node starts
        if node.sequencer.is_leader:
            break
        await asyncio.sleep(0.05)

    resp = await client.get("/readyz")

    body = await resp.json()
    assert resp.status == 200, body
    assert body["database"] is True
    assert body["migrations"]["ok"] is True
    assert body["sequencer"]["leader"] is True


async def test_readyz_is_503_when_no_sequencer_leads(database_url: str, settings: Any) -> None:
    follower = LogNode(database_url, settings, sequencer=False)
    await follower.start()
    try:
        async with TestClient(TestServer(create_app(follower, settings))) as client:
            resp = await client.get("/readyz")
            body = await resp.json()
    finally:
        await follower.stop()

    assert resp.status == 503
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert body["error"]["details"]["sequencer"]["leader"] is False
    assert body["error"]["details"]["failed"] == ["sequencer"]
    assert int(resp.headers["Retry-After"]) >= 1


async def test_metrics_count_requests_by_route_and_status_and_show_the_log(
    client: TestClient[Any, Any], user: Any, node: LogNode
) -> None:
    await client.get("/api/v1/users/me", headers=user.headers)
    await client.get("/api/v1/users/me")
    appended = await node.store.append(
        "thing-1", 0, [EncodedEvent(type="t", schema_version=1, data={})]
    )
    assert await node.store.wait_for_position(1, timeout=10)
    del appended

    resp = await client.get("/metrics")

    text = await resp.text()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert (
        'helix_http_requests_total{method="GET",route="/api/v1/users/me",status="200"} 1.0' in text
    )
    assert 'route="/api/v1/users/me",status="401"' in text
    assert "helix_eventstore_head_position" in text
    assert "helix_sequencer_lag_seconds" in text
    assert "helix_sequencer_pending_events" in text


async def test_a_node_without_the_api_role_reports_its_roles_on_its_probes(
    node: LogNode, settings: Any
) -> None:
    runner = ProjectionRunner(
        node.store, [registry.BY_NAME["projects"]], poll_interval=0.1, supervisor=node.supervisor
    )
    await runner.start()
    try:
        async with TestClient(TestServer(create_probe_app(node, settings))) as client:
            for _ in range(100):  # the sequencer takes its lock just after the node starts
                ready = await client.get("/readyz")
                if ready.status == 200:
                    break
                await asyncio.sleep(0.05)
            body = await ready.json()
            scraped = await (await client.get("/metrics")).text()
            api = await client.get("/api/v1/users/me")
            api_body = await api.json()
    finally:
        await runner.stop()

    assert ready.status == 200, body
    roles = body["roles"]["roles"]
    assert {"sequencer", "head-watcher", "wakeups", "projection-projects"} <= set(roles)
    assert all(role["state"] == "running" for role in roles.values())
    assert 'helix_role_state{role="sequencer",state="running"} 1.0' in scraped
    assert 'helix_role_state{role="projection-projects",state="running"} 1.0' in scraped
    assert "# TYPE helix_projection_lag_events gauge" in scraped
    assert api.status == 404 and api_body["error"]["code"] == "NOT_FOUND"
