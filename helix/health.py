"""The readiness checks (database reachable, schema at head, a sequencer leading and keeping
up), which `/readyz` reports, and the log's gauges, which `/metrics` shows."""

from __future__ import annotations

from typing import Any

import asyncpg
import attrs

from helix import migrate
from helix.domain.job import JobStatus
from helix.eventstore import blocked_by, sequencer_lag
from helix.eventstore.sequencer import LEADER_LOCK
from helix.sql import load

QUERIES = load("helix", "health.sql")
DELIVERY_OUTCOMES = ("pending", "failed", "succeeded", "dead")


async def readiness(pool: asyncpg.Pool, max_sequencer_lag: float) -> dict[str, Any]:
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
        "max_lag_seconds": max_sequencer_lag,
        "ok": leaders > 0 and lag < max_sequencer_lag,
    }
    return checks


@attrs.frozen(kw_only=True)
class LogGauges:
    """How far each consumer of the log is behind it, and what waits: read at each scrape."""

    head: int
    sequencer_lag_seconds: float
    sequencer_pending: int
    dispatcher_backlog: int  # positioned events the webhook dispatcher has not fanned out
    projection_lag: dict[str, int]  # per read model: head minus its checkpoint
    claimable_jobs: int
    jobs: dict[str, int]  # by status, every status named
    deliveries: dict[str, int]  # by outcome, every outcome named


async def log_gauges(pool: asyncpg.Pool) -> LogGauges:
    """A few aggregate queries in one repeatable-read transaction: a consistent picture whose
    cost does not grow with the number of scrapers' requests between scrapes."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        positions = await conn.fetchrow(QUERIES["gauge_positions"])
        lag, pending = await sequencer_lag(conn)
        checkpoints = await conn.fetch(QUERIES["gauge_projections"])
        deliveries = dict.fromkeys(DELIVERY_OUTCOMES, 0)
        for row in await conn.fetch(QUERIES["gauge_deliveries"]):
            deliveries[row["outcome"]] = row["n"]
        jobs = dict.fromkeys((status.value for status in JobStatus), 0)
        jobs.update({r["status"]: r["n"] for r in await conn.fetch(QUERIES["gauge_jobs"])})
        claimable = await conn.fetchval(QUERIES["gauge_claimable"])
    head = int(positions["head"] or 0)
    return LogGauges(
        head=head,
        sequencer_lag_seconds=lag,
        sequencer_pending=pending,
        dispatcher_backlog=max(0, head - int(positions["dispatched"] or 0)),
        projection_lag={r["name"]: max(0, head - int(r["position"])) for r in checkpoints},
        claimable_jobs=int(claimable),
        jobs=jobs,
        deliveries=deliveries,
    )
