"""Shared pieces of the benchmarks: a scratch database and percentile arithmetic."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg
import attrs

from helix import migrate
from helix.database import with_database


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A freshly migrated database beside the real one, dropped afterwards."""
    name = f"helix_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = with_database(server_url, name)
    try:
        await migrate.upgrade(url)
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@attrs.frozen
class ServerCounts:
    """What the server itself counted for one database: statements (pg_stat_statements calls,
    transaction control apart) and the WAL records they wrote; None where the extension is not
    loaded (it needs `shared_preload_libraries`)."""

    statements: int | None
    wal_records: int | None

    def per(self, earlier: ServerCounts, jobs: int) -> tuple[float, float]:
        if self.statements is None or earlier.statements is None:
            return float("nan"), float("nan")
        assert self.wal_records is not None and earlier.wal_records is not None
        return (
            (self.statements - earlier.statements) / jobs,
            (self.wal_records - earlier.wal_records) / jobs,
        )


STATEMENT_COUNTS = """
SELECT coalesce(sum(calls), 0)::bigint AS statements,
       coalesce(sum(wal_records), 0)::bigint AS wal_records
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query !~* '^\\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)'
  AND query NOT LIKE '%pg_stat_statements%'
"""


async def server_counts(url: str) -> ServerCounts:
    """The database's statement and WAL counts so far (a probe on a connection of its own)."""
    conn = await asyncpg.connect(url)
    try:
        loaded = await conn.fetchval(
            "SELECT 1 FROM pg_settings WHERE name = 'shared_preload_libraries'"
            " AND 'pg_stat_statements' = ANY(string_to_array(replace(setting, ' ', ''), ','))"
        )
        if not loaded:
            return ServerCounts(None, None)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        row = await conn.fetchrow(STATEMENT_COUNTS)
        assert row is not None
        return ServerCounts(row["statements"], row["wal_records"])
    finally:
        await conn.close()
