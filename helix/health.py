"""The readiness checks: database reachable, schema at head, a sequencer leading and keeping
up. `/readyz` reports them."""

from __future__ import annotations

from typing import Any

import asyncpg

from helix import migrate
from helix.eventstore import blocked_by, sequencer_lag
from helix.eventstore.sequencer import LEADER_LOCK
from helix.sql import load

QUERIES = load("helix", "health.sql")
MAX_SEQUENCER_LAG = 30.0


async def readiness(pool: asyncpg.Pool) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    async with pool.acquire() as conn:
        checks["database"] = await conn.fetchval(QUERIES["database_up"]) == 1
        revision = await conn.fetchval(QUERIES["current_revision"])
        checks["migrations"] = {
            "current": revision,
            "head": migrate.head_revision(),
            "ok": revision == migrate.head_revision(),
        }
        leaders = await conn.fetchval(
            QUERIES["leader_held"], LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF
        )
    lag, pending = await sequencer_lag(pool)
    # The append transaction those events wait for, if they wait for one (sequencer.py).
    blocker = await blocked_by(pool) if pending else None
    checks["sequencer"] = {
        "leader": leaders > 0,
        "lag_seconds": round(lag, 3),
        "pending": pending,
        "blocked_by": None if blocker is None else blocker.report(),
        "ok": leaders > 0 and lag < MAX_SEQUENCER_LAG,
    }
    return checks
