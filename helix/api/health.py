"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from helix import migrate
from helix.api.requests import public
from helix.appkeys import POOL
from helix.errors import Unavailable
from helix.eventstore import sequencer_lag
from helix.eventstore.sequencer import LEADER_LOCK

routes = web.RouteTableDef()

MAX_SEQUENCER_LAG = 30.0
CHECK_TIMEOUT = 5.0
# A bigint advisory key shows in pg_locks split in two: classid the high 32 bits, objid the
# low 32, and objsubid 1.
LEADER_HELD = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND classid::bigint = $1 AND objid::bigint = $2
"""
CURRENT_REVISION = "SELECT version_num FROM alembic_version"


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})


async def readiness(pool: Any) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    async with pool.acquire() as conn:
        checks["database"] = await conn.fetchval("SELECT 1") == 1
        revision = await conn.fetchval(CURRENT_REVISION)
        checks["migrations"] = {
            "current": revision,
            "head": migrate.head_revision(),
            "ok": revision == migrate.head_revision(),
        }
        leaders = await conn.fetchval(LEADER_HELD, LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF)
    lag, pending = await sequencer_lag(pool)
    checks["sequencer"] = {
        "leader": leaders > 0,
        "lag_seconds": round(lag, 3),
        "pending": pending,
        "ok": leaders > 0 and lag < MAX_SEQUENCER_LAG,
    }
    return checks


@routes.get("/readyz")
@public
async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable, schema at head, a sequencer leading and keeping up."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            checks = await readiness(request.app[POOL])
    except Exception as exc:
        raise Unavailable(
            "the database is not reachable", database=False, reason=type(exc).__name__
        ) from None
    ok = checks["database"] and checks["migrations"]["ok"] and checks["sequencer"]["ok"]
    if not ok:
        raise Unavailable("not ready", **checks)
    return web.json_response({"status": "ready", **checks})
