"""The sequencer's horizon waits only for Helix's own append transactions: a foreign transaction
holding a transaction id, in the log's database or another one of the server, does not stall
positioning; an append transaction held open does, and `/readyz` and the log name it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from helix.api.app import create_app
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import with_database
from helix.eventstore import EncodedEvent, Sequencer, verify_chain
from helix.health import readiness


def ev(n: int) -> EncodedEvent:
    return EncodedEvent(type="test.happened", schema_version=1, data={"n": n})


@pytest.fixture
async def other_database(pg_url: str) -> AsyncIterator[str]:
    """Another database on the test server, as a batch job elsewhere on the cluster would use."""
    name = f"other_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield with_database(pg_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def _still_running(conn: asyncpg.Connection, xid: int) -> bool:
    return await conn.fetchval("SELECT pg_xact_status($1::text::xid8)", str(xid)) == "in progress"


@pytest.mark.parametrize("where", ["the log's database", "another database"])
async def test_a_foreign_transaction_holding_an_id_does_not_hold_back_positions(
    node: LogNode, database_url: str, other_database: str, where: str
) -> None:
    url = database_url if where == "the log's database" else other_database
    foreign = await asyncpg.connect(url, server_settings={"application_name": "analyst"})
    admin = await asyncpg.connect(database_url)
    try:
        opened = foreign.transaction()
        await opened.start()
        xid = int(await foreign.fetchval("SELECT pg_current_xact_id()::text"))
        # The snapshot horizon every transaction of the server sees is held at that id.
        held = await admin.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        assert int(held) <= xid

        store = node.store
        await store.append("alone-1", 0, [ev(1)])  # a statement of its own
        assert node.pool is not None
        async with node.pool.acquire() as conn, conn.transaction():  # a caller's transaction
            await store.append("held-1", 0, [ev(2), ev(3)], conn=conn)
            await store.append("alone-1", 1, [ev(4)], conn=conn)
        store.committed()

        assert await store.wait_for_position(4, timeout=10)
        assert await _still_running(admin, xid), "the foreign transaction is still open"
        appended_by = await admin.fetch("SELECT transaction_id::text AS x FROM events")
        assert all(int(r["x"]) > xid for r in appended_by), "the appends came after it"
        rows = await admin.fetch("SELECT position, stream_id, version FROM events ORDER BY 1")
        assert [(r["stream_id"], r["version"]) for r in rows] == [
            ("alone-1", 1),
            ("held-1", 1),
            ("held-1", 2),
            ("alone-1", 2),
        ]
        assert [r["position"] for r in rows] == [1, 2, 3, 4]
        assert node.pool is not None
        sequencer = (await readiness(node.pool, node.settings.ready_max_sequencer_lag))["sequencer"]
        assert (sequencer["pending"], sequencer["blocked_by"]) == (0, None)
        await opened.rollback()
    finally:
        await foreign.close()
        await admin.close()


async def test_a_transaction_that_wrote_before_taking_the_append_lock_may_not_append(
    node: LogNode,
) -> None:
    assert node.pool is not None
    async with node.pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_current_xact_id()")  # as any write would
            with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="append lock"):
                await node.store.append("late-1", 0, [ev(1)], conn=conn)
        async with conn.transaction():
            await node.store.begin_appending(conn)  # first, as the unit of work does
            await conn.execute("SELECT pg_current_xact_id()")
            await node.store.append("early-1", 0, [ev(2)], conn=conn)
    node.store.committed()
    assert await node.store.wait_for_position(1, timeout=10)
    assert [e.stream_id for e in await node.store.read_all(0)] == ["early-1"]


async def test_an_append_lock_that_a_rolled_back_savepoint_dropped_must_be_taken_again(
    node: LogNode,
) -> None:
    assert node.pool is not None
    async with node.pool.acquire() as conn, conn.transaction():
        savepoint = conn.transaction()
        await savepoint.start()
        await node.store.append("gone-1", 0, [ev(1)], conn=conn)  # lock and id in the savepoint
        await savepoint.rollback()  # the lock goes; the transaction keeps its id
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="append lock"):
            await node.store.append("gone-2", 0, [ev(2)], conn=conn)


async def test_an_open_append_transaction_holds_back_later_appends_and_readyz_and_the_log_name_it(
    database_url: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    node = LogNode(database_url, settings, sequencer=False)
    await node.start()
    sequencer = Sequencer(
        node.connector("seq"),
        poll_interval=0.2,
        name="seq",
        blocked_log_after=0.0,
        blocked_log_interval=3600.0,  # so once for the whole test
    )
    assert node._wakeups is not None and node.pool is not None
    node._wakeups.local.append(sequencer.wake)
    await sequencer.start()
    slow = await node.connector("slow-appender")()
    try:
        caplog.set_level(logging.WARNING, logger="helix.eventstore.sequencer")
        opened = slow.transaction()
        await opened.start()
        await node.store.append("slow-1", 0, [ev(1)], conn=slow)
        await node.store.append("quick-1", 0, [ev(2)])

        def named() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "slow-appender" in r.getMessage()]

        async with asyncio.timeout(10):
            while not (named() and sequencer.waits >= 5):  # noqa: ASYNC110 (a log has no event)
                await asyncio.sleep(0.01)
        [logged] = named()  # rate-limited: once, though the sequencer looked again and again
        assert f"pid {slow.get_server_pid()} (helix-slow-appender" in logged.getMessage()
        assert await node.store.head() == 0, "the committed append waits for the open one"

        async with TestClient(TestServer(create_app(node, settings))) as client:
            resp = await client.get("/readyz")
            body = await resp.json()
        assert resp.status == 200, body  # not yet late enough to be unready
        blocked = body["sequencer"]["blocked_by"]
        assert blocked["pid"] == slow.get_server_pid()
        assert blocked["application_name"] == "helix-slow-appender"
        assert blocked["age_seconds"] >= 0
        assert body["sequencer"]["pending"] == 1

        await opened.commit()
        node.store.committed()
        assert await node.store.wait_for_position(2, timeout=10)
        assert [e.stream_id for e in await node.store.read_all(0)] == ["slow-1", "quick-1"]
        assert (await readiness(node.pool, node.settings.ready_max_sequencer_lag))["sequencer"][
            "blocked_by"
        ] is None
        assert (await verify_chain(node.pool)).ok
    finally:
        await slow.close()
        await sequencer.stop()
        await node.stop()
