"""The `phases` read model: each job's phases with status, timings, output count, files, cost."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix.domain.job import (
    FileRecord,
    JobPaused,
    JobPhaseCompleted,
    JobPhaseCost,
    JobPhaseFailed,
    JobPhaseFile,
    JobPhaseOutput,
    JobPhaseSkipped,
    JobPhaseStarted,
    JobQueued,
    JobRetryScheduled,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, live_tables, sql, to_json

SQL = load("projections", "phases.sql")
TABLES: tuple[str, ...] = ("job_phases_seen", "job_phases")
LIVE = live_tables(TABLES)


class PhasesProjection(StreamProjection):
    name = "phases"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(
        {
            "job.queued",
            "job.phase_started",
            "job.phase_output",
            "job.phase_file",
            "job.phase_cost",
            "job.phase_completed",
            "job.phase_failed",
            "job.phase_skipped",
            "job.retry_scheduled",
            "job.paused",
        }
    )
    tables = TABLES
    seen = "job_phases_seen"

    async def handle(
        self, conn: asyncpg.Connection, event: RecordedEvent, decoded: Any, t: Tables
    ) -> None:
        match decoded:
            case JobQueued():
                rows = [
                    (
                        decoded.job_id,
                        ordinal,
                        spec.name,
                        to_json(spec.command),
                        spec.timeout_s,
                        to_json(spec.capabilities),
                        to_json(spec.env),
                    )
                    for ordinal, spec in enumerate(decoded.phases, start=1)
                ]
                if rows:
                    await conn.executemany(sql(SQL, "planned", t), rows)
            case JobPhaseStarted():
                await conn.execute(
                    sql(SQL, "started", t), decoded.job_id, decoded.phase, decoded.at
                )
            case JobPhaseOutput():
                await conn.execute(
                    sql(SQL, "output", t), decoded.job_id, decoded.phase, len(decoded.lines)
                )
            case JobPhaseFile():
                files: list[dict[str, Any]] = (
                    await conn.fetchval(sql(SQL, "files", t), decoded.job_id, decoded.phase) or []
                )
                record = FileRecord(
                    path=decoded.path,
                    size=decoded.size,
                    sha256=decoded.sha256,
                    change=None if decoded.change is None else decoded.change.value,
                ).fields()
                # A file written again replaces its earlier record, keeping its place.
                if any(f["path"] == decoded.path for f in files):
                    files = [record if f["path"] == decoded.path else f for f in files]
                else:
                    files.append(record)
                await conn.execute(sql(SQL, "set_files", t), decoded.job_id, decoded.phase, files)
            case JobPhaseCost():
                await conn.execute(
                    sql(SQL, "cost", t), decoded.job_id, decoded.phase, decoded.tokens, decoded.usd
                )
            case JobPhaseCompleted():
                await conn.execute(
                    sql(SQL, "completed", t), decoded.job_id, decoded.phase, decoded.at,
                    decoded.exit_code,
                )  # fmt: skip
            case JobPhaseFailed():
                await conn.execute(
                    sql(SQL, "failed", t), decoded.job_id, decoded.phase, decoded.at,
                    decoded.exit_code, decoded.error,
                )  # fmt: skip
            case JobPhaseSkipped():
                await conn.execute(
                    sql(SQL, "skipped", t), decoded.job_id, decoded.phase, decoded.at,
                    decoded.reason,
                )  # fmt: skip
            case JobRetryScheduled() | JobPaused():
                await conn.execute(sql(SQL, "retry_scheduled", t), decoded.job_id)


PROJECTION = PhasesProjection()


async def of_job(conn: asyncpg.Connection, job_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql(SQL, "of_job", LIVE), job_id))
