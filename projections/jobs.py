"""The `jobs` read model: one row per job with its status, lease, attempts, progress and cost."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
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
    JobPriority,
    JobProgressReported,
    JobQueued,
    JobRequeued,
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
from projections.seen import StreamProjection, Write, live_tables, sql

SQL = load(
    "projections",
    "jobs.sql",
    fragments=("before", "running_follows", "claim_filter"),
    shared=access.LIST_FRAGMENTS,
)
TABLES: tuple[str, ...] = ("jobs", "job_owners")
LIVE = live_tables(TABLES)
# Claimers LISTEN here; a commit that queued a job, scheduled a retry or freed a running slot
# wakes them (after the commit, never inside it: see helix.services.unit).
CLAIM_CHANNEL = "helix_jobs"


class JobsProjection(StreamProjection):
    name = "jobs"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables = TABLES
    blocks = SQL
    primary = "jobs"
    guarded = True

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        key = (decoded.job_id, decoded.at, event.version)
        match decoded:
            case JobQueued():
                return [(sql(SQL, "queued", t), (
                    *key, decoded.project_id, decoded.owner, decoded.start_phase, decoded.model,
                    decoded.requested_by, decoded.max_attempts, decoded.max_duration_s,
                    decoded.priority.rank,
                ))]  # fmt: skip
            case JobClaimed():
                return [(sql(SQL, "claimed", t), (
                    *key, decoded.worker_id, decoded.fencing_token, decoded.lease_expires_at,
                    decoded.attempt,
                ))]  # fmt: skip
            case JobLeaseRenewed():
                return [(sql(SQL, "lease_renewed", t), (*key, decoded.lease_expires_at))]
            case JobStarted():
                return [(sql(SQL, "started", t), key)]
            case JobPhaseCost():
                return [(sql(SQL, "cost", t), (*key, decoded.tokens, decoded.usd))]
            case JobProgressReported():
                return [(sql(SQL, "progress", t), (*key, decoded.percent))]
            case JobCancelRequested():
                return [(sql(SQL, "cancel_requested", t), (*key, decoded.reason))]
            case JobCancelled():
                return [(sql(SQL, "cancelled", t), key)]
            case JobPauseRequested():
                return [(sql(SQL, "pause_requested", t), key)]
            case JobPaused():
                return [(sql(SQL, "paused", t), key)]
            case JobResumed():
                return [(sql(SQL, "resumed", t), key)]
            case JobStuck():
                return [(sql(SQL, "stuck", t), key)]
            case JobWaiting():
                return [(sql(SQL, "waiting", t), key)]
            case JobRetryScheduled():
                return [(sql(SQL, "retry_scheduled", t), (*key, decoded.not_before))]
            case JobCompleted():
                return [(sql(SQL, "completed", t), key)]
            case JobFailed():
                return [(sql(SQL, "failed", t), (*key, decoded.error, decoded.dead_lettered))]
            case JobRequeued():
                return [(sql(SQL, "requeued", t), (*key, decoded.max_attempts))]
            case _:  # the phase events: only the job's clock and version move
                return [(sql(SQL, "touched", t), key)]


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
    priority: JobPriority | None = None,
    dead_lettered: bool | None = None,
) -> tuple[list[asyncpg.Record], int]:
    rank = None if priority is None else priority.rank
    filters = (owner, project_id, status, rank, dead_lettered)
    rows = await conn.fetch(sql(SQL, "list", LIVE), *filters, limit, offset)
    total: int = await conn.fetchval(sql(SQL, "count", LIVE), *filters)
    return list(rows), total


async def claimable(
    conn: asyncpg.Connection,
    *,
    capabilities: Sequence[str],
    at: datetime,
    limit: int,
    passed: Sequence[UUID],
    aging_s: float | None,
) -> asyncpg.Record | None:
    """Lock and return the next job this worker may claim (see the `claimable` block): one
    that waited longer than `aging_s` first, else the highest priority, oldest first."""
    promoted = None if aging_s is None else at - timedelta(seconds=aging_s)
    row: asyncpg.Record | None = await conn.fetchrow(
        SQL["claimable"], list(capabilities), at, limit, list(passed), promoted
    )
    return row


async def running(conn: asyncpg.Connection, owner: str) -> int:
    """The owner's running jobs, as the kept count has them (in this transaction)."""
    count: int | None = await conn.fetchval(SQL["running"], owner)
    return count or 0


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
