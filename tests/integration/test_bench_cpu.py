"""The benchmarks' CPU accounting sees this process, a helper process and the PostgreSQL
backends of one database."""

from __future__ import annotations

import os

import asyncpg
import pytest

from helix.bench import cpu
from helix.bench.cpu import CpuTimes
from helix.database import database_name


def test_a_process_whose_name_holds_spaces_and_parentheses_is_read() -> None:
    stat = "4242 (postgres: a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0"

    assert cpu._process_seconds(stat) == (250 + 50) / os.sysconf("SC_CLK_TCK")


def test_unknown_groups_print_as_a_dash() -> None:
    times = CpuTimes(client=0.002, database=None, helper=0.001)

    assert times.per_event_us(100) == "20 / - / 10"


@pytest.mark.skipif(
    bool(os.environ.get("HELIX_TEST_DATABASE_URL")),
    reason="an external server's processes may not be on this machine",
)
async def test_work_in_a_backend_of_the_database_is_counted(database_url: str) -> None:
    database = database_name(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        before = cpu.sample(database, helper_pid=os.getpid())
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
        spent = cpu.sample(database, helper_pid=os.getpid()) - before
    finally:
        await conn.close()

    assert spent.database is not None and spent.database > 0
    assert spent.helper is not None
    assert cpu.database_seconds("no_such_database_anywhere") is None
