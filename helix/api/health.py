"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from helix.api.requests import probe
from helix.appkeys import POOL
from helix.errors import Unavailable
from helix.health import readiness

routes = web.RouteTableDef()

CHECK_TIMEOUT = 5.0


@routes.get("/healthz")
@probe
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@probe
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
