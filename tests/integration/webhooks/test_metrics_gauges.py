"""/metrics against a real server: after the test makes jobs, deliveries and stream
subscribers, the scraped numbers are the ones it made."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services import Services
from helix.webhooks import WebhookRoles
from helix.webhooks.dispatcher import Dispatcher
from projections import registry
from projections.runner import ProjectionRunner
from tests.integration.streams.streams_support import new_project, queued_job, run_job
from tests.integration.webhooks.webhook_support import Caller, Receiver, free_port, wait_until
from tests.support import settled

Client = TestClient[Any, Any]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # One quick attempt, then a retry far beyond the test: a failing delivery stays failed.
    return attrs.evolve(settings, webhook_retry_schedule=(0, 3600))


async def scrape(client: Client) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    families = list(text_string_to_metric_families(text))
    for name in (
        "helix_webhook_dispatcher_backlog_events",
        "helix_projection_lag_events",
        "helix_jobs_claimable",
        "helix_webhook_deliveries",
        "helix_jobs",
        "helix_stream_subscriptions",
        "helix_sequencer_pending_events",
    ):
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text, name
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


async def test_metrics_show_the_jobs_deliveries_lags_and_subscribers_the_test_made(
    client: Client,
    node: LogNode,
    settings: Settings,
    services: Services,
    user: Caller,
    admin: Caller,
) -> None:
    ok, failing = Receiver(port=free_port()), Receiver(port=free_port(), status=lambda _r: 500)
    await ok.start()
    await failing.start()
    for receiver in (ok, failing):
        resp = await client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "event_types": ["project.created"]},
            headers=user.headers,
        )
        assert resp.status == 201, await resp.text()
    # Three jobs: one run to completion, one queued, one held by its project's pause.
    projects = [await new_project(services, user, f"m{n}") for n in range(3)]
    jobs = [await queued_job(services, user, p) for p in projects]
    await run_job(services, jobs[0])
    await services.projects.pause(user.service, projects[2])
    head = await settled(node)

    before = await scrape(client)
    assert before[("helix_eventstore_head_position", ())] == head
    assert before[("helix_sequencer_pending_events", ())] == 0
    # Nothing has dispatched yet: every event is backlog.
    assert before[("helix_webhook_dispatcher_backlog_events", ())] == head
    assert by(before, "helix_jobs", "status") == {
        "queued": 1, "running": 0, "paused": 1, "completed": 1, "failed": 0, "cancelled": 0,
    }  # fmt: skip
    assert before[("helix_jobs_claimable", ())] == 1

    dispatcher = Dispatcher(node.store, settings)
    while await dispatcher.dispatch_once() or dispatcher.position < head:
        pass
    dispatched = await scrape(client)
    assert dispatched[("helix_webhook_dispatcher_backlog_events", ())] == 0
    assert by(dispatched, "helix_webhook_deliveries", "outcome") == {
        "pending": 6, "failed": 0, "succeeded": 0, "dead": 0,
    }  # fmt: skip

    delivery = WebhookRoles(node.store, settings, dispatcher=False)
    await delivery.start()
    try:

        async def attempted() -> bool:
            outcomes = by(await scrape(client), "helix_webhook_deliveries", "outcome")
            return outcomes["pending"] == 0

        await wait_until(attempted)
    finally:
        await delivery.stop()
        await ok.stop()
        await failing.stop()
    delivered = await scrape(client)
    assert by(delivered, "helix_webhook_deliveries", "outcome") == {
        "pending": 0, "failed": 3, "succeeded": 3, "dead": 0,
    }  # fmt: skip
    assert len(ok.received) == 3

    # A read model's lag is the head minus its checkpoint: caught up, then behind by what
    # was appended after it stopped.
    runner = ProjectionRunner(node.store, [registry.BY_NAME["projects"]], poll_interval=0.1)
    await runner.start()
    try:

        async def caught_up() -> bool:
            lags = by(await scrape(client), "helix_projection_lag_events", "projection")
            return lags.get("projects") == 0

        await wait_until(caught_up)
    finally:
        await runner.stop()
    await new_project(services, user, "later")
    later = await settled(node)
    checkpoint = await node.store.pool.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = 'projects'"
    )
    lags = by(await scrape(client), "helix_projection_lag_events", "projection")
    assert lags["projects"] == later - checkpoint > 0

    # Two SSE streams and one socket with two subscriptions.
    sse = [
        await client.get(f"/api/v1/projects/{projects[n]}/stream", headers=user.headers)
        for n in range(2)
    ]
    ws = await client.ws_connect("/api/v1/ws", headers=admin.headers)
    try:
        assert all(resp.status == 200 for resp in sse)
        for sub_id in ("a", "b"):
            await ws.send_json({"type": "subscribe", "id": sub_id, "payload": {"stream": "all"}})
        subscribed: set[str] = set()
        while subscribed != {"a", "b"}:
            msg = await asyncio.wait_for(ws.receive(), 20)
            assert msg.type is aiohttp.WSMsgType.TEXT
            message = msg.json()
            if message["type"] == "subscribed":
                subscribed.add(message["id"])
        assert by(await scrape(client), "helix_stream_subscriptions", "transport") == {
            "sse": 2,
            "websocket": 2,
        }
    finally:
        await ws.close()
        for resp in sse:
            resp.close()

    async def unsubscribed() -> bool:
        counts = by(await scrape(client), "helix_stream_subscriptions", "transport")
        return counts == {"sse": 0, "websocket": 0}

    await wait_until(unsubscribed)
