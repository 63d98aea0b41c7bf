"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from helix import __version__
from helix.api.requests import probe
from helix.appkeys import POOL, SETTINGS
from helix.errors import Unavailable
from helix.health import readiness
from helix.supervisor import Supervisor

routes = web.RouteTableDef()
# The process's supervised background roles, where `helix serve` runs any beside the API.
SUPERVISOR = web.AppKey("supervisor", Supervisor)

CHECK_TIMEOUT = 5.0
# When this process started serving (its module is loaded once, by the app that serves it).
STARTED = time.monotonic()


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
    """Liveness: the process is up and serving (the database is not asked), with the
    version it runs and the seconds since it started."""
    uptime_s = round(time.monotonic() - STARTED, 3)
    return web.json_response({"status": "ok", "version": __version__, "uptime_s": uptime_s})


@routes.get("/readyz")
@probe
async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable, schema at head, a sequencer leading and keeping up, and
    none of this process's background roles failing for long."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            checks = await readiness(
                request.app[POOL], request.app[SETTINGS].ready_max_sequencer_lag
            )
    except Exception as exc:
        raise Unavailable(
            "not ready: the database is not reachable",
            database=False,
            failed=["database"],
            reason=type(exc).__name__,
        ) from None
    supervisor = request.app.get(SUPERVISOR)
    if supervisor is not None:
        checks["roles"] = supervisor.report()
    failed = failed_checks(checks)
    if failed:
        failing = checks.get("roles", {}).get("failing")
        named = f" (failing roles {', '.join(failing)})" if failing else ""
        raise Unavailable(f"not ready: {', '.join(failed)}{named}", failed=failed, **checks)
    return web.json_response({"status": "ready", **checks})
