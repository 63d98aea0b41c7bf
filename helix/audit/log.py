"""The audit log: filtered pages of the event log and single events, with visibility applied.

An event's JSON is the public envelope (`helix.envelope.public`), the one every reader sees.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from helix import envelope
from helix.audit.filters import EventFilter
from helix.eventstore.sql import QUERIES
from helix.eventstore.store import read_windows

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


async def select(pool: asyncpg.Pool, selection: EventFilter, limit: int) -> list[asyncpg.Record]:
    """At most `limit` matching events after `selection.after`, in position order."""
    after, cap, residual = selection.after, selection.up_to, selection.residual_args()
    rows: list[asyncpg.Record]
    if selection.stream_id is not None:
        rows = await pool.fetch(
            QUERIES["audit_events_stream"],
            after, limit, cap, *residual, selection.stream_id, selection.project_id,
        )  # fmt: skip
    elif selection.project_id is not None:
        rows = await pool.fetch(
            QUERIES["audit_events_project"], after, limit, cap, *residual, selection.project_id
        )
    elif selection.viewer is not None:
        rows = await pool.fetch(QUERIES["audit_events_viewer"], after, limit, cap, *residual)
    else:
        head = int(await pool.fetchval(QUERIES["head"]))
        up_to = head if cap is None else min(cap, head)
        rows = await read_windows(pool, QUERIES["audit_events"], after, up_to, limit, *residual)
    return rows


async def page(
    pool: asyncpg.Pool, selection: EventFilter, limit: int = DEFAULT_LIMIT
) -> dict[str, Any]:
    """One page; the next one is `after=next_after`. `has_more` is False only when the page
    is short, so the last full page may be followed by an empty one."""
    rows = await select(pool, selection, limit)
    return {
        "items": [envelope.public(r) for r in rows],
        "after": selection.after,
        "limit": limit,
        "next_after": rows[-1]["position"] if rows else selection.after,
        "has_more": len(rows) == limit,
    }


async def event_at(pool: asyncpg.Pool, position: int, viewer: str | None) -> dict[str, Any] | None:
    """The event at `position` if it exists and `viewer` (None: anyone) may see it."""
    row = await pool.fetchrow(QUERIES["audit_event_at"], position, viewer)
    return None if row is None else envelope.public(row)
