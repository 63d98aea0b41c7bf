"""With PostgreSQL stopped, every route answers 503 SERVICE_UNAVAILABLE with Retry-After (never
500), liveness still answers, nothing is half-written, and the node serves again once
PostgreSQL is back. The server here is one of the test's own, so stopping it stops no other
test's database."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from alembic import command

from helix.api.app import create_app
from helix.api.errors import errors_middleware
from helix.api.middleware import add_common_headers, request_id_middleware
from helix.appkeys import SETTINGS
from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import database_unavailable, with_database
from helix.domain.user import Role
from helix.embedded import EmbeddedPostgres
from helix.migrate import alembic_config
from tests.integration.fixtures import TEST_CALLER
from tests.integration.streams.streams_support import EventStream


@pytest.fixture
def own_server() -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL server of this test's own, with a migrated database; and its URL."""
    with tempfile.TemporaryDirectory(prefix="hx-") as tmp:
        server = EmbeddedPostgres(Path(tmp), durable=False)
        url = server.start()
        try:
            asyncio.run(_create_database(url))
            database = with_database(url, "helix")
            command.upgrade(alembic_config(database), "head")
            yield server, database
        finally:
            server.stop()


async def _create_database(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE DATABASE helix")
    finally:
        await conn.close()


def _raised_from(cause: BaseException) -> BaseException:
    try:
        raise RuntimeError("the query failed") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        FileNotFoundError(2, "no socket"),
        TimeoutError(),  # a pool acquire that timed out
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        _raised_from(asyncpg.AdminShutdownError("terminated")),
    ],
    ids=repr,
)
def test_a_lost_or_refusing_database_counts_as_unavailable(exc: BaseException) -> None:
    assert database_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("x"),
        ValueError("bad"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedTableError("relation does not exist"),
    ],
    ids=repr,
)
def test_a_bug_or_a_refused_statement_is_not_unavailable(exc: BaseException) -> None:
    assert not database_unavailable(exc)


async def unavailable(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == 503, body
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(resp.headers["Retry-After"]) >= 1
    assert body["request_id"] == resp.headers["X-Request-ID"]
    return body


async def until_ok(client: TestClient[Any, Any], path: str, headers: dict[str, str]) -> int:
    """Poll `path` until it answers below 500 (at most 60 s); every answer meanwhile is a 503."""
    async with asyncio.timeout(60):
        while True:
            resp = await client.get(path, headers=headers)
            if resp.status < 500:
                return resp.status
            await unavailable(resp)
            await asyncio.sleep(0.2)


async def test_a_stopped_database_is_503_on_every_route_and_then_serves_again(
    own_server: tuple[EmbeddedPostgres, str],
) -> None:
    server, url = own_server
    settings = Settings(sequencer_poll_interval=0.2, wakeup_interval=0.001)
    node = LogNode(url, settings)
    await node.start()
    try:
        accounts = Accounts(node.store)
        user = await accounts.create_user("alice", Role.USER, "a long password", caller=TEST_CALLER)
        _, key = await accounts.create_key(user.user_id, "key", caller=TEST_CALLER)
        auth = {"Authorization": f"Bearer {key}"}
        async with TestClient(TestServer(create_app(node, settings))) as client:
            created = await client.post("/api/v1/projects", json={"name": "before"}, headers=auth)
            assert created.status == 201, await created.text()
            events_before = await node.store.pool.fetchval("SELECT count(*) FROM events")

            await asyncio.to_thread(server.stop)

            await unavailable(await client.get("/api/v1/projects", headers=auth))
            await unavailable(
                await client.post("/api/v1/projects", json={"name": "during"}, headers=auth)
            )
            await unavailable(
                await client.post(
                    "/api/v1/auth/login", json={"username": "alice", "password": "a long password"}
                )
            )
            for headers in ({}, auth, {"Authorization": "Bearer not-a-token"}):
                ready = await unavailable(await client.get("/readyz", headers=headers))
                assert ready["error"]["details"]["failed"] == ["database"]
                live = await client.get("/healthz", headers=headers)
                assert live.status == 200  # liveness never asks the database

            await asyncio.to_thread(server.start)

            assert await until_ok(client, "/api/v1/projects", auth) == 200
            listed = await (await client.get("/api/v1/projects", headers=auth)).json()
            assert [p["name"] for p in listed["items"]] == ["before"]
            assert await node.store.pool.fetchval("SELECT count(*) FROM events") == events_before
            again = await client.post("/api/v1/projects", json={"name": "after"}, headers=auth)
            assert again.status == 201, await again.text()
            assert await until_ok(client, "/readyz", {}) == 200
    finally:
        await node.stop()


async def test_a_connection_terminated_inside_a_write_is_503_and_writes_nothing(
    client: TestClient[Any, Any], user: Any, node: LogNode, database_url: str
) -> None:
    blocker = await asyncpg.connect(database_url)
    # Another session: inside a transaction, pg_stat_activity is a snapshot that never changes.
    watcher = await asyncpg.connect(database_url)
    try:
        # Hold the write inside its transaction, at its insert into the log.
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE events IN SHARE MODE")
        write = asyncio.create_task(
            client.post("/api/v1/projects", json={"name": "cut off"}, headers=user.headers)
        )
        async with asyncio.timeout(20):
            while True:
                terminated = await watcher.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'helix' AND wait_event_type = 'Lock'"
                    " AND query LIKE '%INSERT INTO events%'"
                )
                if terminated:
                    break
                await asyncio.sleep(0.02)
        resp = await write
        await unavailable(resp)
        await locked.rollback()
    finally:
        await blocker.close()
        await watcher.close()

    assert not await node.store.pool.fetchval(
        "SELECT count(*) FROM events WHERE data->>'name' = 'cut off'"
    )
    again = await client.post("/api/v1/projects", json={"name": "cut off"}, headers=user.headers)
    assert again.status == 201, await again.text()


NOT_READY_STATEMENTS = {
    # 55000 object_not_in_prerequisite_state, as a standby being promoted answers
    "/recovery": ("SELECT pg_wal_replay_pause()", False),
    # 25006 read_only_sql_transaction, as a standby reached during a failover answers
    "/read-only": ("CREATE TABLE written_on_a_standby (x int)", True),
}


async def test_a_database_not_in_the_state_a_statement_needs_is_a_503_not_a_500(
    database_url: str, settings: Settings
) -> None:
    async def handle(request: web.Request) -> web.Response:
        statement, read_only = NOT_READY_STATEMENTS[request.path]
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction(readonly=read_only):
                await conn.execute(statement)
        finally:
            await conn.close()
        return web.json_response({})

    app = web.Application(middlewares=[request_id_middleware, errors_middleware])
    app[SETTINGS] = settings
    app.on_response_prepare.append(add_common_headers)
    for path in NOT_READY_STATEMENTS:
        app.router.add_get(path, handle)
    async with TestClient(TestServer(app)) as client:
        recovery = await unavailable(await client.get("/recovery"))
        read_only = await unavailable(await client.get("/read-only"))

    assert recovery["error"]["details"]["sqlstate"] == "55000"
    assert read_only["error"]["details"]["sqlstate"] == "25006"


async def test_live_streams_end_with_a_service_unavailable_error_when_the_database_drops(
    own_server: tuple[EmbeddedPostgres, str],
) -> None:
    server, url = own_server
    settings = Settings(
        sequencer_poll_interval=0.2, wakeup_interval=0.001, stream_poll_interval=0.2
    )
    node = LogNode(url, settings)
    await node.start()
    try:
        accounts = Accounts(node.store)
        user = await accounts.create_user("alice", Role.USER, None, caller=TEST_CALLER)
        _, key = await accounts.create_key(user.user_id, "key", caller=TEST_CALLER)
        auth = {"Authorization": f"Bearer {key}"}
        async with TestClient(TestServer(create_app(node, settings))) as client:
            sse = EventStream(await client.get("/api/v1/events/stream", headers=auth))
            assert sse.resp.status == 200
            ws = await client.ws_connect("/api/v1/ws", headers=auth)
            await ws.send_json({"type": "subscribe", "id": "s", "payload": {"stream": "all"}})
            got = [await ws.receive_json(timeout=20)]
            while got[-1]["type"] != "caught_up":
                got.append(await ws.receive_json(timeout=20))

            await asyncio.to_thread(server.stop)

            messages = await sse.until(lambda ms: any(m.event == "error" for m in ms))
            ending = json.loads(messages[-1].data)
            assert await sse.next() is None  # and the stream has ended
            after_drop = [await ws.receive_json(timeout=20)]
            while after_drop[-1]["type"] != "error":
                after_drop.append(await ws.receive_json(timeout=20))
            error = after_drop[-1]
            await ws.close()
            await asyncio.to_thread(server.start)
    finally:
        await node.stop()

    assert messages[-1].event == "error"
    assert ending["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert ending["error"]["details"]["retry_after"] >= 1
    assert (error["id"], error["payload"]["code"]) == ("s", "SERVICE_UNAVAILABLE"), after_drop
