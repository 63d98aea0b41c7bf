"""`GET /api/v1/audit/verify`: the hash chain and dense positions, checked (admins, auditors)."""

from __future__ import annotations

from aiohttp import web

from helix.api.handlers import documented, reply
from helix.appkeys import POOL
from helix.auth.principal import require_role
from helix.domain.user import Role
from helix.eventstore import verify_chain

routes = web.RouteTableDef()


@routes.get("/api/v1/audit/verify")
@documented(
    _200="ok, verified_head and head_hash; when not ok, first_bad_position and reason",
)
async def verify_audit_chain(request: web.Request) -> web.Response:
    """Walk the log's hash chain from position 1 to the head (as `helix audit verify` does)."""
    require_role(request, Role.ADMIN, Role.AUDITOR)
    report = await verify_chain(request.app[POOL])
    body = {
        "ok": report.ok,
        "verified_head": report.verified_head,
        "head_hash": report.head_hash,
        "first_bad_position": report.first_bad_position,
        "reason": report.reason,
    }
    return reply(body, at=report.verified_head)
