"""`Idempotency-Key` on POSTs: the same key and body get the stored response back.

A key is reserved (a row with no status) before the handler runs, so a concurrent duplicate
sees the reservation and gets a 409 instead of running the command twice. A completed response
(any status below 500) is stored with the row; a request that raises an error or fails with a
5xx releases the reservation instead, since errors change nothing and the client may retry. A
response marked `Cache-Control: no-store` (a claim, which carries phase secrets) is never
stored: its reservation is released too.
Keys are scoped per principal (or client address) and expire after the configured TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.api.keys import POOL, SETTINGS
from helix.api.principal import PRINCIPAL
from helix.api.requests import client_address
from helix.errors import BadRequest, Conflict
from helix.tasks import cancel_and_wait

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
STORED_HEADERS = ("Content-Type", "Location", "X-Helix-Position", "ETag")
# A reservation this old belongs to a request that died with its process; it may be taken over.
ABANDONED_SECONDS = 300
PURGE_INTERVAL = 600.0

RESERVE = """
INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO NOTHING
"""
FIND = """
SELECT fingerprint, status, headers, body,
       created_at < now() - make_interval(secs => $3) AS expired,
       status IS NULL AND created_at < now() - make_interval(secs => $4) AS abandoned
FROM idempotency_keys WHERE scope = $1 AND key = $2
"""
TAKE_OVER = """
UPDATE idempotency_keys
SET fingerprint = $3, status = NULL, headers = NULL, body = NULL, created_at = now(),
    completed_at = NULL
WHERE scope = $1 AND key = $2
  AND (created_at < now() - make_interval(secs => $4)
       OR (status IS NULL AND created_at < now() - make_interval(secs => $5)))
"""
COMPLETE = """
UPDATE idempotency_keys SET status = $3, headers = $4, body = $5, completed_at = now()
WHERE scope = $1 AND key = $2
"""
RELEASE = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL"
PURGE = "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)"


def _scope(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    return f"user:{principal.user_id}" if principal else f"ip:{client_address(request)}"


async def _fingerprint(request: web.Request) -> str:
    body = await request.read()
    return f"{request.method} {request.path_qs} {hashlib.sha256(body).hexdigest()}"


def _replay(row: Any) -> web.Response:
    headers: dict[str, str] = dict(row["headers"] or {})
    headers["Idempotent-Replayed"] = "true"
    return web.Response(status=row["status"], body=row["body"], headers=headers)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return await handler(request)
    if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise BadRequest(f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable characters")
    pool = request.app[POOL]
    ttl = request.app[SETTINGS].idempotency_ttl_seconds
    scope, fingerprint = _scope(request), await _fingerprint(request)
    reserved = await pool.execute(RESERVE, scope, key, fingerprint) == "INSERT 0 1"
    if not reserved:
        row = await pool.fetchrow(FIND, scope, key, float(ttl), float(ABANDONED_SECONDS))
        if row is not None and not (row["expired"] or row["abandoned"]):
            if row["fingerprint"] != fingerprint:
                raise Conflict(
                    f"this {HEADER} was used for a different request", idempotency_key=key
                )
            if row["status"] is None:
                raise Conflict(
                    f"a request with this {HEADER} is still in progress", idempotency_key=key
                )
            return _replay(row)
        taken = await pool.execute(
            TAKE_OVER, scope, key, fingerprint, float(ttl), float(ABANDONED_SECONDS)
        )
        if row is None:
            reserved = await pool.execute(RESERVE, scope, key, fingerprint) == "INSERT 0 1"
        else:
            reserved = taken == "UPDATE 1"
        if not reserved:
            raise Conflict(
                f"a request with this {HEADER} is still in progress", idempotency_key=key
            )
    try:
        response = await handler(request)
    except BaseException:
        await asyncio.shield(pool.execute(RELEASE, scope, key))
        raise
    body = response.body if isinstance(response, web.Response) else None
    storable = "no-store" not in response.headers.get("Cache-Control", "")
    if isinstance(body, bytes) and response.status < 500 and not response.prepared and storable:
        headers = {h: response.headers[h] for h in STORED_HEADERS if h in response.headers}
        await pool.execute(COMPLETE, scope, key, response.status, headers, body)
    else:
        await pool.execute(RELEASE, scope, key)
    return response


async def purge_expired(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: deletes expired keys now and then."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                await app[POOL].execute(PURGE, float(app[SETTINGS].idempotency_ttl_seconds))
            except Exception:
                log.warning("could not purge expired idempotency keys", exc_info=True)

    task = asyncio.create_task(loop(), name="helix-idempotency-purge")
    yield
    await cancel_and_wait([task])
