"""Supervised background roles: a role whose connection is terminated mid-transaction is
restarted and does its work afterwards, and /readyz names a role that keeps failing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.api.app import create_app
from helix.api.health import SUPERVISOR
from helix.bootstrap import Components, LogNode
from helix.config import Settings
from helix.services import Services
from helix.services.reaper import LeaseReaper
from helix.supervisor import STATES, Supervisor
from helix.webhooks import WebhookRoles
from projections import registry
from projections.jobs import CLAIM_CHANNEL
from projections.runner import ProjectionRunner
from tests.integration.api.test_workers_api import FAST, claim, execute, register
from tests.integration.fixtures import Caller
from tests.integration.streams.streams_support import (
    EventStream,
    events_of,
    new_project,
    queued_job,
)
from tests.integration.test_eventstore import ev
from tests.integration.webhooks.webhook_support import wait_until

Client = TestClient[Any, Any]


@pytest.fixture
def settings() -> Settings:
    return Settings(
        sequencer_poll_interval=0.2,
        wakeup_interval=0.001,
        rate_limit_per_minute=0,
        webhook_retry_schedule=(0, 0.2, 0.4),
        webhook_allowed_networks=("127.0.0.0/8",),
        webhook_poll_interval=0.05,
        reaper_interval=0.1,
        **FAST,
    )


@pytest.fixture
def supervisor() -> Supervisor:
    return Supervisor(initial_backoff=0.05, max_backoff=0.2, settle=0.5, failing_after=0.5)


@pytest.fixture
async def admin_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def terminate_waiter(admin: asyncpg.Connection, lock_row: str) -> None:
    """Hold `lock_row` (a SELECT … FOR UPDATE) until a pool connection waits on it inside its
    transaction, then terminate that connection and let the lock go."""
    async with admin.transaction():
        await admin.execute(lock_row)

        async def waiting() -> bool:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'helix' AND wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            return bool(killed)

        await wait_until(waiting)


async def test_the_dispatcher_killed_mid_transaction_restarts_and_delivers_what_follows(
    node: LogNode,
    settings: Settings,
    supervisor: Supervisor,
    user: Caller,
    client: Client,
    admin_conn: asyncpg.Connection,
) -> None:
    got: list[Any] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    roles = WebhookRoles(node.store, settings, supervisor=supervisor)
    await roles.start()
    try:
        resp = await client.post(
            "/api/v1/webhooks",
            json={"url": f"http://127.0.0.1:{port}/", "event_types": ["project.*"]},
            headers=user.headers,
        )
        assert resp.status == 201, await resp.text()
        await terminate_waiter(admin_conn, "SELECT 1 FROM webhook_dispatcher FOR UPDATE")
        for n in range(3):
            resp = await client.post(
                "/api/v1/projects", json={"name": f"after-{n}"}, headers=user.headers
            )
            assert resp.status == 201

        async def delivered() -> bool:
            names = {e["data"].get("name") for e in got if e["type"] == "project.created"}
            return {"after-0", "after-1", "after-2"} <= names

        await wait_until(delivered)
        role = supervisor.roles["webhook-dispatcher"]
        assert role.restarts >= 1 and role.state == "running"
        assert role.error is not None
    finally:
        await roles.stop()
        await runner.cleanup()
    assert supervisor.roles["webhook-dispatcher"].state == "stopped"


async def test_a_projection_killed_mid_batch_restarts_and_catches_up(
    node: LogNode,
    supervisor: Supervisor,
    user: Caller,
    client: Client,
    admin_conn: asyncpg.Connection,
) -> None:
    projection = registry.BY_NAME["projects"]
    runner = ProjectionRunner(node.store, [projection], poll_interval=0.1, supervisor=supervisor)
    await runner.start()
    try:

        async def checkpointed() -> bool:
            found = await admin_conn.fetchval(
                "SELECT count(*) FROM projection_checkpoints WHERE name = 'projects'"
            )
            return bool(found)

        await wait_until(checkpointed)  # a row to hold: the runner creates it on first use
        await terminate_waiter(
            admin_conn,
            "SELECT 1 FROM projection_checkpoints WHERE name = 'projects' FOR UPDATE",
        )
        resp = await client.post("/api/v1/projects", json={"name": "p"}, headers=user.headers)
        assert resp.status == 201
        head = await node.store.head()

        async def caught_up() -> bool:
            position = await admin_conn.fetchval(
                "SELECT position FROM projection_checkpoints WHERE name = 'projects'"
            )
            return position is not None and position >= head and head > 0

        await wait_until(caught_up)
        assert supervisor.roles["projection-projects"].restarts >= 1
    finally:
        await runner.stop()


async def test_the_reaper_restarts_after_losing_its_connections_and_expires_a_lease(
    node: LogNode,
    settings: Settings,
    supervisor: Supervisor,
    make_client: Callable[..., Awaitable[Client]],
    user: Caller,
    worker: Caller,
    admin_conn: asyncpg.Connection,
) -> None:
    wclient = await make_client(**FAST)
    reaper = LeaseReaper(node.store, settings, supervisor=supervisor)
    await reaper.start()
    try:
        # Every pool connection of this database, the reaper's among them, between or in rounds.
        async def reaper_failed() -> bool:
            await admin_conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'helix' AND datname = current_database()"
            )
            return supervisor.roles["reaper"].restarts >= 1

        await wait_until(reaper_failed)
        # The API's requests below share the pool: let them start on fresh connections.
        assert node.pool is not None
        await node.pool.expire_connections()
        worker_id = await register(wclient, worker)
        job_id = await execute(wclient, user)
        await claim(wclient, worker, worker_id, lease_s=1.0)

        async def expired() -> bool:
            found = await admin_conn.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'job.stuck'",
                f"job-{job_id}",
            )
            return bool(found)

        await wait_until(expired)
    finally:
        await reaper.stop()


async def test_readyz_names_a_role_that_keeps_failing_then_turns_ready_again(
    node: LogNode,
    settings: Settings,
    supervisor: Supervisor,
    aiohttp_client: Any,
    admin_conn: asyncpg.Connection,
) -> None:
    app = create_app(node, settings)
    app[SUPERVISOR] = supervisor
    probe = await aiohttp_client(app)
    roles = WebhookRoles(node.store, settings, supervisor=supervisor)
    await admin_conn.execute("ALTER TABLE webhook_dispatcher RENAME TO webhook_dispatcher_gone")
    await roles.start()
    try:

        async def named() -> bool:
            resp = await probe.get("/readyz")
            body = await resp.json()
            return resp.status == 503 and "webhook-dispatcher" in body["error"]["message"]

        await wait_until(named)
        resp = await probe.get("/metrics")
        samples = dict(
            line.rsplit(" ", 1) for line in (await resp.text()).splitlines() if line[:1] != "#"
        )
        assert float(samples['helix_role_restarts_total{role="webhook-dispatcher"}']) >= 1
        states = [f'helix_role_state{{role="webhook-dispatcher",state="{s}"}}' for s in STATES]
        assert sorted(float(samples[name]) for name in states) == [0.0, 0.0, 1.0]
        assert float(samples[states[STATES.index("stopped")]]) == 0.0
        await admin_conn.execute("ALTER TABLE webhook_dispatcher_gone RENAME TO webhook_dispatcher")

        async def ready() -> bool:
            resp = await probe.get("/readyz")
            body = await resp.json()
            return resp.status == 200 and body["roles"]["failing"] == []

        await wait_until(ready)
    finally:
        await roles.stop()


async def test_the_sequencer_restarts_after_its_connection_is_terminated_and_positions_on(
    node: LogNode, admin_conn: asyncpg.Connection
) -> None:
    await node.store.append("test-before", 0, [ev()])
    assert await node.store.wait_for_position(1, timeout=15)

    async def leader_killed() -> bool:
        await admin_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'helix-sequencer' AND datname = current_database()"
        )
        return node.supervisor.roles["sequencer"].restarts >= 1

    await wait_until(leader_killed)
    await node.store.append("test-after", 0, [ev()])
    assert await node.store.wait_for_position(2, timeout=15)
    assert node.supervisor.roles["sequencer"].state == "running"


LISTENING_ROLES = ("head-watcher", f"listen-{CLAIM_CHANNEL}", "wakeups", "stream-tailer")


async def test_listeners_wakeups_and_the_stream_tailer_recover_from_terminated_connections(
    node: LogNode,
    settings: Settings,
    services: Services,
    user: Caller,
    aiohttp_client: Any,
    admin_conn: asyncpg.Connection,
) -> None:
    components = await Components.start(node, settings)
    try:
        client = await aiohttp_client(create_app(node, settings, components))
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200, body
        for name in LISTENING_ROLES:
            assert body["roles"]["roles"][name]["state"] == "running", name

        # Every connection of the node: the two LISTEN ones and the pool's, until both
        # listeners have been restarted by the supervisor.
        async def listeners_restarted() -> bool:
            await admin_conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name IN ('helix', 'helix-listen', 'helix-claims') "
                "AND datname = current_database()"
            )
            roles = node.supervisor.roles
            return all(roles[n].restarts >= 1 for n in ("head-watcher", f"listen-{CLAIM_CHANNEL}"))

        await wait_until(listeners_restarted)
        assert node.pool is not None
        await node.pool.expire_connections()

        # The stream follows the log again: an event appended now reaches a live subscriber.
        stream = EventStream(await client.get("/api/v1/events/stream", headers=user.headers))
        assert stream.resp.status == 200
        project_id = await new_project(services, user, "after-the-drop")
        got = await stream.until(
            lambda ms: any(m.data and str(project_id) in m.data for m in events_of(ms))
        )
        stream.resp.close()
        assert any(m.event == "project.created" for m in events_of(got))

        # Wake-ups reach claimers again: queueing a job notifies the claim channel.
        seen = components.claims.count

        async def woken() -> bool:
            return components.claims.count > seen

        await queued_job(services, user, project_id)
        await wait_until(woken)

        async def all_running() -> bool:
            resp = await client.get("/readyz")
            roles = (await resp.json())["roles"]["roles"]
            return resp.status == 200 and all(roles[n]["state"] == "running" for n in roles)

        await wait_until(all_running)
    finally:
        await components.stop()
    assert node.supervisor.roles[f"listen-{CLAIM_CHANNEL}"].state == "stopped"
