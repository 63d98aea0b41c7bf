"""The `output` read model: every output line of every job, pageable and tail-able."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix.domain.job import JobPhaseOutput
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, Write, live_tables, sql

SQL = load("projections", "output.sql")
TABLES: tuple[str, ...] = ("job_output_lines",)
LIVE = live_tables(TABLES)


class OutputProjection(StreamProjection):
    name = "output"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset({"job.phase_output"})
    tables = TABLES
    blocks = SQL
    primary = "job_output_lines"

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        if not isinstance(decoded, JobPhaseOutput):
            return []
        return [(sql(SQL, "lines", t), (
            decoded.job_id, decoded.phase, decoded.first_line_no, decoded.stream.value,
            list(decoded.lines), decoded.at, decoded.attempt, event.version,
        ))]  # fmt: skip


PROJECTION = OutputProjection()


async def page(
    conn: asyncpg.Connection, job_id: UUID, *, phase: str | None, after: int, limit: int
) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql(SQL, "page", LIVE), job_id, phase, after, limit))


async def tail(conn: asyncpg.Connection, job_id: UUID, lines: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql(SQL, "tail", LIVE), job_id, lines))


async def count(conn: asyncpg.Connection, job_id: UUID, phase: str | None) -> int:
    total: int = await conn.fetchval(sql(SQL, "count", LIVE), job_id, phase)
    return total
