"""The worker registry: one row per worker, with its capabilities and last heartbeat.

Not a log projection: the worker service writes the row in the same transaction as the
worker's events, and heartbeats (which are not events) update it in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from helix.domain.worker import WorkerRegistered
from helix.eventstore.sql import load

SQL = load("projections", "workers.sql")


async def insert(conn: asyncpg.Connection, registered: WorkerRegistered) -> None:
    """The row of a worker as its registration event describes it."""
    e = registered
    await conn.execute(
        SQL["insert"],
        e.worker_id, e.user_id, e.name, e.hostname, list(e.capabilities), e.resources, e.at,
    )  # fmt: skip


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


async def go_offline(
    conn: asyncpg.Connection, *, silent_since: datetime, at: datetime, limit: int = 100
) -> list[asyncpg.Record]:
    return list(await conn.fetch(SQL["go_offline"], silent_since, at, limit))
