"""The worker registry: the `workers` projection and the `worker_heartbeats` runtime table.

`workers` is folded from the worker streams (registration, offline, online, pruned: the row
leaves), inline and by the
runner, and `helix projections rebuild workers` rebuilds it from the log. Liveness is not: a
worker heartbeats every few seconds for as long as it lives, so its reported status, current
job, latest resources and last heartbeat go to `worker_heartbeats`, written by heartbeats and
claims in place, and never exported or rebuilt (a worker that beats again restores it). The
reads join the two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg

from helix.domain.worker import (
    EVENTS,
    WorkerCameOnline,
    WorkerPruned,
    WorkerRegistered,
    WorkerWentOffline,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, sql

SQL = load("projections", "workers.sql", fragments=("view",))
TABLES: tuple[str, ...] = ("workers_seen", "workers")


class WorkersProjection(StreamProjection):
    name = "workers"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables = TABLES
    seen = "workers_seen"

    async def handle(
        self, conn: asyncpg.Connection, event: RecordedEvent, decoded: Any, t: Tables
    ) -> None:
        v = event.version
        match decoded:
            case WorkerRegistered():
                await conn.execute(
                    sql(SQL, "registered", t), decoded.worker_id, decoded.user_id, decoded.name,
                    decoded.hostname, list(decoded.capabilities), decoded.resources, decoded.at,
                    v,
                )  # fmt: skip
            case WorkerWentOffline():
                await conn.execute(sql(SQL, "went_offline", t), decoded.worker_id, decoded.at, v)
            case WorkerCameOnline():
                await conn.execute(sql(SQL, "came_online", t), decoded.worker_id, v)
            case WorkerPruned():
                await conn.execute(sql(SQL, "pruned", t), decoded.worker_id)


PROJECTION = WorkersProjection()


# --- queries behind the API and the worker protocol (the live table, with liveness) ----------


async def get(conn: asyncpg.Connection, worker_id: UUID, *, lock: bool = False) -> Any:
    return await conn.fetchrow(SQL["get_for_update" if lock else "get"], worker_id)


async def heartbeat(
    conn: asyncpg.Connection,
    worker_id: UUID,
    *,
    status: str,
    current_job: UUID | None,
    resources: dict[str, Any] | None,
    at: datetime,
) -> None:
    await conn.execute(SQL["heartbeat"], worker_id, status, current_job, resources, at)


async def page(
    conn: asyncpg.Connection, *, user_id: UUID | None, online: bool | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(SQL["list"], user_id, online, limit, offset)
    total: int = await conn.fetchval(SQL["count"], user_id, online)
    return list(rows), total


async def silent(
    conn: asyncpg.Connection, *, silent_since: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    """Online workers not heard from since `silent_since`, locked for the caller's transaction."""
    return list(await conn.fetch(SQL["silent"], silent_since, limit))


async def prunable(
    conn: asyncpg.Connection, *, offline_before: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    """Workers offline since before `offline_before`, locked for the caller's transaction."""
    return list(await conn.fetch(SQL["prunable"], offline_before, limit))


async def forget_heartbeat(conn: asyncpg.Connection, worker_id: UUID) -> None:
    await conn.execute(SQL["forget_heartbeat"], worker_id)


async def offers(conn: asyncpg.Connection, *, online: bool) -> list[list[str]]:
    """The capability sets of the workers online (or, `online=False`, of every registered one)."""
    return [list(row["capabilities"]) for row in await conn.fetch(SQL["offers"], online)]
