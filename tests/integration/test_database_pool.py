"""The pool hands out connections the server also sees as idle, whatever the last holder left
half done: asyncpg sends a statement's Parse before its Bind, and a holder stopped in between
leaves an implicit transaction on the server that asyncpg does not know of."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from helix.config import Settings
from helix.database import SYNC, create_pool

Holder = Callable[[asyncpg.Connection], Awaitable[None]]


async def refused_argument(conn: asyncpg.Connection) -> None:
    # Refused by the client's codec after the server parsed the statement.
    with pytest.raises(asyncpg.DataError):
        await conn.fetchval("SELECT count(*) FROM pg_class WHERE relpages > $1::int", "many")


async def prepared_only(conn: asyncpg.Connection) -> None:
    # What a holder cancelled right after the statement was prepared leaves.
    await conn.prepare("SELECT count(*) FROM pg_class")


@pytest.mark.parametrize("holder", [refused_argument, prepared_only])
async def test_the_next_holder_gets_a_connection_the_server_sees_idle(
    database_url: str, holder: Holder
) -> None:
    pool = await create_pool(database_url, Settings(), max_size=1)
    observer = await asyncpg.connect(database_url)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await holder(conn)
            # The half-done exchange is there while it is held: the test sees what it fixes.
            state = "SELECT state FROM pg_stat_activity WHERE pid = $1"
            assert await observer.fetchval(state, pid) == "active"
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid  # the same connection, the pool's only one
            assert await observer.fetchval(state, pid) == "idle"
            async with conn.transaction(isolation="repeatable_read"):
                assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
        # Nothing holds pg_class's lock: a lock that conflicts with every reader is granted.
        async with observer.transaction():
            await observer.execute("SET LOCAL lock_timeout = '5s'")
            await observer.execute("LOCK TABLE pg_class IN ACCESS EXCLUSIVE MODE")
    finally:
        await observer.close()
        await pool.close()


async def test_a_holder_whose_statements_all_ended_costs_no_round_trip_on_release(
    database_url: str,
) -> None:
    logged: list[str] = []
    pool = await create_pool(
        database_url, Settings(), max_size=1, query_logger=lambda q: logged.append(q.query)
    )
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT $1::int + 1", 1) == 2
            async with conn.transaction():
                await conn.execute("SELECT 3")
        async with pool.acquire() as conn:
            await refused_argument(conn)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 4") == 4
    finally:
        await pool.close()
    # The exchange is ended only after the refused argument.
    assert [q for q in logged if q == SYNC] == [SYNC]
    assert logged.index(SYNC) > logged.index(
        "SELECT count(*) FROM pg_class WHERE relpages > $1::int"
    )
