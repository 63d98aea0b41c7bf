"""The audit log: filtered pages of the event log and single events, with visibility applied.

An event's JSON is the one `GET /projects/{id}/history` shows (`helix.services.views.event_view`)
plus the two envelope fields an audit needs to group events: `stream_type` and `project_id`.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from helix.audit.filters import EventFilter
from helix.eventstore.sql import QUERIES
from helix.eventstore.store import read_windows
from helix.services.views import event_view, ident
from projections.stream import recorded

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    view = event_view(recorded(row))
    view["stream_type"] = row["stream_type"]
    view["project_id"] = ident(row["project_id"])
    return view


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
        "items": [event_json(r) for r in rows],
        "after": selection.after,
        "limit": limit,
        "next_after": rows[-1]["position"] if rows else selection.after,
        "has_more": len(rows) == limit,
    }


async def event_at(pool: asyncpg.Pool, position: int, viewer: str | None) -> dict[str, Any] | None:
    """The event at `position` if it exists and `viewer` (None: anyone) may see it."""
    row = await pool.fetchrow(QUERIES["audit_event_at"], position, viewer)
    return None if row is None else event_json(row)
