"""The `jobs` read model: one row per job with its status, lease, attempts, progress and cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix import access
from helix.domain.job import (
    EVENTS,
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobCompleted,
    JobFailed,
    JobLeaseRenewed,
    JobPaused,
    JobPauseRequested,
    JobPhaseCost,
    JobProgressReported,
    JobQueued,
    JobResumed,
    JobRetryScheduled,
    JobStarted,
    JobStuck,
    JobWaiting,
    Need,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, live_tables, sql

SQL = load("projections", "jobs.sql", shared=access.LIST_FRAGMENTS)
TABLES: tuple[str, ...] = ("jobs_seen", "jobs")
LIVE = live_tables(TABLES)
# Claimers LISTEN here; a commit that queued a job, scheduled a retry or freed a running slot
# wakes them (after the commit, never inside it: see helix.services.unit).
CLAIM_CHANNEL = "helix_jobs"


class JobsProjection(StreamProjection):
    name = "jobs"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables = TABLES
    seen = "jobs_seen"

    async def handle(
        self, conn: asyncpg.Connection, event: RecordedEvent, decoded: Any, t: Tables
    ) -> None:
        key = (decoded.job_id, decoded.at, event.version)
        match decoded:
            case JobQueued():
                await conn.execute(
                    sql(SQL, "queued", t), *key, decoded.project_id, decoded.owner,
                    decoded.start_phase, decoded.model, decoded.requested_by,
                    decoded.max_attempts, decoded.max_duration_s,
                )  # fmt: skip
            case JobClaimed():
                await conn.execute(
                    sql(SQL, "claimed", t), *key, decoded.worker_id, decoded.fencing_token,
                    decoded.lease_expires_at, decoded.attempt,
                )  # fmt: skip
            case JobLeaseRenewed():
                await conn.execute(sql(SQL, "lease_renewed", t), *key, decoded.lease_expires_at)
            case JobStarted():
                await conn.execute(sql(SQL, "started", t), *key)
            case JobPhaseCost():
                await conn.execute(sql(SQL, "cost", t), *key, decoded.tokens, decoded.usd)
            case JobProgressReported():
                await conn.execute(sql(SQL, "progress", t), *key, decoded.percent)
            case JobCancelRequested():
                await conn.execute(sql(SQL, "cancel_requested", t), *key, decoded.reason)
            case JobCancelled():
                await conn.execute(sql(SQL, "cancelled", t), *key)
            case JobPauseRequested():
                await conn.execute(sql(SQL, "pause_requested", t), *key)
            case JobPaused():
                await conn.execute(sql(SQL, "paused", t), *key)
            case JobResumed():
                await conn.execute(sql(SQL, "resumed", t), *key)
            case JobStuck():
                await conn.execute(sql(SQL, "stuck", t), *key)
            case JobWaiting():
                await conn.execute(sql(SQL, "waiting", t), *key)
            case JobRetryScheduled():
                await conn.execute(sql(SQL, "retry_scheduled", t), *key, decoded.not_before)
            case JobCompleted():
                await conn.execute(sql(SQL, "completed", t), *key)
            case JobFailed():
                await conn.execute(
                    sql(SQL, "failed", t), *key, decoded.error, decoded.dead_lettered
                )
            case _:  # the phase events: only the job's clock and version move
                await conn.execute(sql(SQL, "touched", t), *key)


PROJECTION = JobsProjection()


# --- queries behind the API and the claim limit (always the live table) ----------------------


async def get(conn: asyncpg.Connection, job_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(sql(SQL, "get", LIVE), job_id)
    return row


async def page(
    conn: asyncpg.Connection,
    *,
    owner: str | None,
    project_id: UUID | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    filters = (owner, project_id, status)
    rows = await conn.fetch(sql(SQL, "list", LIVE), *filters, limit, offset)
    total: int = await conn.fetchval(sql(SQL, "count", LIVE), *filters)
    return list(rows), total


async def count_running(conn: asyncpg.Connection, owner: str) -> int:
    count: int = await conn.fetchval(sql(SQL, "count_running", LIVE), owner)
    return count


async def claimable(
    conn: asyncpg.Connection,
    *,
    capabilities: Sequence[str],
    at: datetime,
    limit: int,
    passed: Sequence[UUID],
) -> asyncpg.Record | None:
    """Lock and return the next job this worker may claim (see the `claimable` block)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        SQL["claimable"], list(capabilities), at, limit, list(passed)
    )
    return row


async def try_lock_owner(conn: asyncpg.Connection, owner: str) -> bool:
    locked: bool = await conn.fetchval(SQL["try_lock_owner"], owner)
    return locked


async def expired_leases(
    conn: asyncpg.Connection | asyncpg.Pool, at: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SQL["expired_leases"], at, limit))


async def overrun(
    conn: asyncpg.Connection | asyncpg.Pool, at: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SQL["overrun"], at, limit))


async def unreported_waiting(
    conn: asyncpg.Connection | asyncpg.Pool, limit: int = 100
) -> list[UUID]:
    return [row["job_id"] for row in await conn.fetch(SQL["unreported_waiting"], limit)]


async def needs(conn: asyncpg.Connection, job_ids: Sequence[UUID]) -> dict[UUID, list[Need]]:
    """What the phases still to run of each of these jobs need (a job with none: absent)."""
    found: dict[UUID, list[Need]] = {}
    for row in await conn.fetch(SQL["needs"], list(job_ids)):
        need = Need(capabilities=tuple(row["capabilities"]), has_command=row["has_command"])
        found.setdefault(row["job_id"], []).append(need)
    return found


async def next_due(conn: asyncpg.Connection | asyncpg.Pool, at: datetime) -> datetime | None:
    due: datetime | None = await conn.fetchval(SQL["next_due"], at)
    return due
