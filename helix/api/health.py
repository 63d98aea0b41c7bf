"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from helix.api.requests import public
from helix.appkeys import POOL
from helix.errors import Unavailable
from helix.health import readiness
from helix.supervisor import Supervisor

routes = web.RouteTableDef()
# The process's supervised background roles, where `helix serve` runs any beside the API.
SUPERVISOR = web.AppKey("supervisor", Supervisor)

CHECK_TIMEOUT = 5.0


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@public
async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable, schema at head, a sequencer leading and keeping up, and
    none of this process's background roles failing for long."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            checks = await readiness(request.app[POOL])
    except Exception as exc:
        raise Unavailable(
            "the database is not reachable", database=False, reason=type(exc).__name__
        ) from None
    ok = checks["database"] and checks["migrations"]["ok"] and checks["sequencer"]["ok"]
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None:
        checks["roles"] = supervisor.report()
        ok = ok and checks["roles"]["ok"]
    if not ok:
        failing = checks.get("roles", {}).get("failing")
        message = f"not ready: failing roles {', '.join(failing)}" if failing else "not ready"
        raise Unavailable(message, **checks)
    return web.json_response({"status": "ready", **checks})
