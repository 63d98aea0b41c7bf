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
    JobPhaseResources,
    JobPhaseSkipped,
    JobPhaseStarted,
    JobQueued,
    JobRequeued,
    JobRetryScheduled,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, Write, live_tables, sql, to_json

SQL = load("projections", "phases.sql")
TABLES: tuple[str, ...] = ("job_phases",)
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
            "job.phase_resources",
            "job.phase_completed",
            "job.phase_failed",
            "job.phase_skipped",
            "job.retry_scheduled",
            "job.paused",
            "job.requeued",
        }
    )
    tables = TABLES
    blocks = SQL
    primary = "job_phases"

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        v = event.version
        match decoded:
            case JobQueued():
                return [
                    (sql(SQL, "planned", t), (
                        decoded.job_id, ordinal, spec.name, to_json(spec.command), spec.timeout_s,
                        to_json(spec.capabilities), to_json(spec.env), v,
                    ))
                    for ordinal, spec in enumerate(decoded.phases, start=1)
                ]  # fmt: skip
            case JobPhaseStarted():
                return [(sql(SQL, "started", t), (decoded.job_id, decoded.phase, v, decoded.at))]
            case JobPhaseOutput():
                lines = len(decoded.lines)
                return [(sql(SQL, "output", t), (decoded.job_id, decoded.phase, v, lines))]
            case JobPhaseFile():
                record = FileRecord(
                    path=decoded.path,
                    size=decoded.size,
                    sha256=decoded.sha256,
                    change=None if decoded.change is None else decoded.change.value,
                ).fields()
                return [(sql(SQL, "file", t), (decoded.job_id, decoded.phase, v, record))]
            case JobPhaseCost():
                return [(sql(SQL, "cost", t), (
                    decoded.job_id, decoded.phase, v, decoded.tokens, decoded.usd,
                ))]  # fmt: skip
            case JobPhaseResources():
                return [(sql(SQL, "resources", t), (
                    decoded.job_id, decoded.phase, v, decoded.cpu_s, decoded.max_rss_bytes,
                    decoded.read_bytes, decoded.write_bytes,
                ))]  # fmt: skip
            case JobPhaseCompleted():
                return [(sql(SQL, "completed", t), (
                    decoded.job_id, decoded.phase, v, decoded.at, decoded.exit_code,
                ))]  # fmt: skip
            case JobPhaseFailed():
                return [(sql(SQL, "failed", t), (
                    decoded.job_id, decoded.phase, v, decoded.at, decoded.exit_code,
                    decoded.error,
                ))]  # fmt: skip
            case JobPhaseSkipped():
                return [(sql(SQL, "skipped", t), (
                    decoded.job_id, decoded.phase, v, decoded.at, decoded.reason,
                ))]  # fmt: skip
            case JobRetryScheduled() | JobPaused():
                return [(sql(SQL, "retry_scheduled", t), (decoded.job_id, v))]
            case JobRequeued():
                return [(sql(SQL, "requeued", t), (decoded.job_id, v, list(decoded.phases)))]
        return []


PROJECTION = PhasesProjection()


async def of_job(conn: asyncpg.Connection, job_id: UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(sql(SQL, "of_job", LIVE), job_id))
