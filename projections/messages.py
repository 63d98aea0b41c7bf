"""The `messages` read model: each project's discussion thread in posting order."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix.domain.project import ProjectMessagePosted
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, Write, live_tables, sql

SQL = load("projections", "messages.sql")
TABLES: tuple[str, ...] = ("project_messages",)
LIVE = live_tables(TABLES)


class MessagesProjection(StreamProjection):
    name = "messages"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset({"project.message_posted"})
    tables = TABLES
    blocks = SQL
    primary = "project_messages"

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        if not isinstance(decoded, ProjectMessagePosted):
            return []
        return [(sql(SQL, "posted", t), (
            decoded.message_id, decoded.project_id, decoded.role.value, decoded.author,
            decoded.content, decoded.at, event.version,
        ))]  # fmt: skip


PROJECTION = MessagesProjection()


async def page(
    conn: asyncpg.Connection, project_id: UUID, *, role: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(sql(SQL, "page", LIVE), project_id, role, limit, offset)
    total: int = await conn.fetchval(sql(SQL, "count", LIVE), project_id, role)
    return list(rows), total
