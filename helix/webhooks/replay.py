"""Deliveries made on request: resend one, replay a range of the log, recover what failed, ping.

Each is a new delivery row (kind `retry`, `replay`, `recover` or `ping`) with its own retry
schedule; the event's id stays the `webhook-id`, so a receiver de-duplicates replays as it does
retries.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import attrs

from helix import globs
from helix.envelope import rfc3339
from helix.errors import NotFound, ValidationError
from helix.webhooks.sql import QUERIES

MAX_REPLAY = 10_000


@attrs.frozen(kw_only=True)
class Replayed:
    deliveries: int
    first_position: int | None
    last_position: int | None
    # Set when the range held more than one request may replay: continue from here.
    next_position: int | None


async def replay(
    pool: asyncpg.Pool,
    endpoint_id: uuid.UUID,
    *,
    since_position: int | None = None,
    since_time: datetime | None = None,
    until_position: int | None = None,
    types: Sequence[str] | None = None,
    limit: int = MAX_REPLAY,
) -> Replayed:
    """New `replay` deliveries for the visible, matching events from `since_position`
    (inclusive) or recorded at/after `since_time`, up to `until_position` or the head."""
    if (since_position is None) == (since_time is None):
        raise ValidationError("give exactly one of since_position and since_time")
    if since_position is not None and since_position < 1:
        raise ValidationError("since_position starts at 1", field="since_position")
    head = await pool.fetchval(QUERIES["head"])
    last = min(head, until_position) if until_position is not None else head
    patterns = globs.like_patterns(globs.check(types, "types") if types else None)
    rows = await pool.fetch(
        QUERIES["replay"], endpoint_id, since_position or 1, last, since_time, patterns, limit
    )
    positions = sorted(r["position"] for r in rows)
    return Replayed(
        deliveries=len(positions),
        first_position=positions[0] if positions else None,
        last_position=positions[-1] if positions else None,
        next_position=positions[-1] + 1 if len(positions) >= limit else None,
    )


async def recover(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, since: datetime, until: datetime | None = None
) -> int:
    """Re-queue the dead deliveries created in [since, until) that never succeeded."""
    rows = await pool.fetch(QUERIES["recover"], endpoint_id, since, until)
    return len(rows)


async def retry(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(QUERIES["retry"], delivery_id, endpoint_id)
    if row is None:
        raise NotFound("delivery not found", delivery_id=str(delivery_id))
    return row


async def ping(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> asyncpg.Record:
    message_id = uuid.uuid4()
    payload: dict[str, Any] = {
        "id": str(message_id),
        "type": "webhook.ping",
        "position": None,
        "timestamp": rfc3339(datetime.now(UTC)),
        "stream_id": f"webhook-{endpoint_id}",
        "project_id": None,
        "data": {"endpoint_id": str(endpoint_id), "message": "ping from Helix"},
    }
    row: asyncpg.Record = await pool.fetchrow(
        QUERIES["ping"], uuid.uuid4(), endpoint_id, message_id, payload
    )
    return row


def delivery_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["delivery_id"]),
        "endpoint_id": str(row["endpoint_id"]),
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "position": row["position"],
        "kind": row["kind"],
        "replay_of": None if row["replay_of"] is None else str(row["replay_of"]),
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": rfc3339(row["created_at"]),
        "delivered_at": rfc3339(row["delivered_at"]),
        "dead_at": rfc3339(row["dead_at"]),
    }


def attempt_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "started_at": rfc3339(row["started_at"]),
        "duration_ms": round(row["duration_ms"], 3),
        "status_code": row["status_code"],
        "error_class": row["error_class"],
        "error": row["error"],
        "response_body": row["response_body"],
        "response_truncated": row["response_truncated"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]),
    }
