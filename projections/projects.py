"""The `projects` read model: one row per project, as the API lists and shows it."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix import access
from helix.domain.project import (
    EVENTS,
    ProjectArchived,
    ProjectCreated,
    ProjectMessagePosted,
    ProjectPhasesPlanned,
    ProjectStatusChanged,
    ProjectUnarchived,
    ProjectUpdated,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, Write, live_tables, sql, to_json

SQL = load("projections", "projects.sql", shared=access.LIST_FRAGMENTS)
TABLES: tuple[str, ...] = ("projects",)
LIVE = live_tables(TABLES)


class ProjectsProjection(StreamProjection):
    name = "projects"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables = TABLES
    blocks = SQL
    primary = "projects"
    guarded = True

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        v = event.version
        match decoded:
            case ProjectCreated():
                return [(sql(SQL, "created", t), (
                    decoded.project_id, decoded.name, decoded.description, decoded.project_type,
                    decoded.owner, decoded.at, v, decoded.max_job_duration_s,
                ))]  # fmt: skip
            case ProjectUpdated():
                return [(sql(SQL, "updated", t), (
                    decoded.project_id, decoded.name, decoded.description, decoded.project_type,
                    decoded.at, v, decoded.max_job_duration_s,
                ))]  # fmt: skip
            case ProjectPhasesPlanned():
                phases = to_json(list(decoded.phases))
                return [
                    (sql(SQL, "phases_planned", t), (decoded.project_id, phases, decoded.at, v))
                ]
            case ProjectStatusChanged():
                return [(sql(SQL, "status_changed", t), (
                    decoded.project_id, decoded.to_status.value, decoded.job_id, decoded.at, v,
                ))]  # fmt: skip
            case ProjectMessagePosted():
                return [(sql(SQL, "message_posted", t), (decoded.project_id, decoded.at, v))]
            case ProjectArchived():
                return [(sql(SQL, "archived", t), (decoded.project_id, decoded.at, v))]
            case ProjectUnarchived():
                return [(sql(SQL, "unarchived", t), (decoded.project_id, decoded.at, v))]
        return []


PROJECTION = ProjectsProjection()


# --- queries behind the API (always the live table) ------------------------------------------


async def get(conn: asyncpg.Connection, project_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(sql(SQL, "get", LIVE), project_id)
    return row


async def page(
    conn: asyncpg.Connection,
    *,
    owner: str | None,
    status: str | None,
    project_type: str | None,
    archived: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    filters = (owner, status, project_type, archived)
    rows = await conn.fetch(sql(SQL, "list", LIVE), *filters, limit, offset)
    total: int = await conn.fetchval(sql(SQL, "count", LIVE), *filters)
    return list(rows), total


async def lock_owner(conn: asyncpg.Connection, owner: str) -> None:
    await conn.execute(SQL["lock_owner"], owner)


async def count_active(conn: asyncpg.Connection, owner: str) -> int:
    count: int = await conn.fetchval(sql(SQL, "count_active", LIVE), owner)
    return count
