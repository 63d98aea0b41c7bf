"""Reads of an endpoint's deliveries, each with the position it reflects.

Deliveries are made by the dispatcher behind the log, committed with its checkpoint, so a read
is stamped with that checkpoint taken before the query: every event up to it has its deliveries
(see `helix.streams.position`).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from helix.errors import NotFound
from helix.webhooks.replay import attempt_view, delivery_view
from helix.webhooks.sql import QUERIES


async def dispatched_position(pool: asyncpg.Pool) -> int:
    """The webhook dispatcher's checkpoint, for a stamp: call it before the deliveries query.
    Every event up to it has its deliveries, which committed with it."""
    value = await pool.fetchval(QUERIES["dispatched_position"])
    return int(value or 0)


async def delivery_page(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]], int]:
    """The position read, a page of the endpoint's deliveries (newest first), and their total."""
    at = await dispatched_position(pool)
    rows = await pool.fetch(QUERIES["delivery_list"], endpoint_id, status, limit, offset)
    total: int = await pool.fetchval(QUERIES["delivery_count"], endpoint_id, status)
    return at, [delivery_view(r) for r in rows], total


async def delivery_with_attempts(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[int, dict[str, Any]]:
    """The position read and one delivery of the endpoint with every attempt; 404 if the
    endpoint has no such delivery."""
    at = await dispatched_position(pool)
    row = await pool.fetchrow(QUERIES["delivery_get"], delivery_id, endpoint_id)
    if row is None:
        raise NotFound("delivery not found", delivery_id=str(delivery_id))
    attempts = await pool.fetch(QUERIES["attempt_list"], delivery_id)
    view = delivery_view(row)
    # `attempts` is the count in every delivery view; the attempts themselves are the log.
    view["attempt_log"] = [attempt_view(a) for a in attempts]
    return at, view
