"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from helix.api.requests import probe
from helix.appkeys import POOL
from helix.errors import Unavailable
from helix.health import readiness

routes = web.RouteTableDef()

CHECK_TIMEOUT = 5.0


def failed_checks(checks: dict[str, Any]) -> list[str]:
    """The names of the checks that failed: a check is `false`, or an object with `"ok": false`."""
    return [
        name
        for name, result in checks.items()
        if result is False or (isinstance(result, dict) and result.get("ok") is False)
    ]


@routes.get("/healthz")
@probe
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving (the database is not asked)."""
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
            "not ready: the database is not reachable",
            database=False,
            failed=["database"],
            reason=type(exc).__name__,
        ) from None
    failed = failed_checks(checks)
    if failed:
        raise Unavailable(f"not ready: {', '.join(failed)}", failed=failed, **checks)
    return web.json_response({"status": "ready", **checks})
