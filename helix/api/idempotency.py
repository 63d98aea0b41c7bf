"""`Idempotency-Key` on POSTs: the same key and body get the stored response back.

A key's scope is the caller (principal, or client address), the method and the path; its
fingerprint is the body. The record is written by the unit of work in the command's own
transaction and commits with the response rendered here (see `helix.services.idempotency`),
so a command and its stored response never part. A retry with the same key and body gets the
stored status, body and headers, plus `Idempotent-Replayed: true`; another body is a 409.
Stored bodies are sealed with the server's secrets key ring (`helix.auth.sealing`).
Errors are never stored, and neither is a response marked `Cache-Control: no-store` (a claim,
which carries phase secrets). Records expire after the configured TTL.

No statement of its own comes before the request: a command's unit of work looks the key up
when it reserves it, in its own transaction, and answers a committed one with its stored
response (`Replay`), so a POST costs no transaction more than its command. A request that
reached no unit of work and was refused looks for a stored response then (its retry may be
refused where the first try was not, and the first try's answer is the one to give). Requests
whose writes commit apart from the key (logins, whose attempt is recorded whatever the answer)
are marked `checked_first`: their stored response is looked up before they run, and theirs is
recorded after they commit, in a statement of its own; another request that reached no unit of
work records its answer so too, or gives the one a concurrent try stored first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.appkeys import POOL, SEALER, SETTINGS
from helix.auth.principal import PRINCIPAL, client_address
from helix.errors import BadRequest
from helix.services.idempotency import HEADER, Idempotency, Replay, StoredResponse, purge_expired
from helix.tasks import cancel_and_wait

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
MAX_KEY_CHARS = 255
# A key: 1 to 255 printable ASCII characters, no space at either end (HTTP would drop it).
KEY_PATTERN = "^[\\x21-\\x7e]([\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"
_KEY = re.compile(KEY_PATTERN.removesuffix("$") + "\\Z")
STORED_HEADERS = ("Content-Type", "Location", "X-Helix-Position", "ETag")
PURGE_INTERVAL = 600.0

# The request's key, for the service layer's caller (helix.api.handlers.caller).
IDEMPOTENCY = web.RequestKey("idempotency", Idempotency)
# Called after a request's command and stored response commit, before the response is sent:
# a fault injected here is a crash between commit and answer.
Hook = Callable[[web.Request], Awaitable[None]]
COMMITTED: web.AppKey[Hook] = web.AppKey("idempotency_committed")


def checked_first(handler: F) -> F:
    """Marks a handler whose writes commit apart from the request's key: a retry is answered
    from the stored response before the handler runs again."""
    handler.__helix_checked_first__ = True  # type: ignore[attr-defined]
    return handler


def _checked_first(request: web.Request) -> bool:
    return bool(getattr(request.match_info.handler, "__helix_checked_first__", False))


def _scope(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    who = f"user:{principal.user_id}" if principal else f"ip:{client_address(request)}"
    return f"{who} {request.method} {request.path}"


def _replay(stored: StoredResponse) -> web.Response:
    headers = {**stored.headers, "Idempotent-Replayed": "true"}
    return web.Response(status=stored.status, body=stored.body, headers=headers)


def _storable(response: web.StreamResponse) -> StoredResponse | None:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or response.prepared or response.status >= 400:
        return None
    if "no-store" in response.headers.get("Cache-Control", ""):
        return None
    headers = {h: response.headers[h] for h in STORED_HEADERS if h in response.headers}
    return StoredResponse(status=response.status, headers=headers, body=body)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return await handler(request)
    if not _KEY.match(key):
        raise BadRequest(
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters, no space at"
            " either end"
        )
    idempotency = Idempotency(
        request.app[POOL],
        request.app[SEALER],
        scope=_scope(request),
        key=key,
        fingerprint=hashlib.sha256(await request.read()).hexdigest(),
        ttl_seconds=request.app[SETTINGS].idempotency_ttl_seconds,
    )
    if _checked_first(request):
        stored = await idempotency.stored()
        if stored is not None:
            return _replay(stored)
    request[IDEMPOTENCY] = idempotency
    try:
        response = await handler(request)
    except Replay as replay:  # the unit of work found this key's committed response
        return _replay(replay.response)
    except Exception:
        await asyncio.shield(idempotency.abandon())
        stored = None if idempotency.reserved else await idempotency.stored()
        if stored is not None:
            return _replay(stored)
        raise
    except BaseException:
        await asyncio.shield(idempotency.abandon())
        raise
    rendered = _storable(response)
    if idempotency.open:
        await idempotency.finish(rendered)
        hook = request.app.get(COMMITTED)
        if hook is not None:
            await hook(request)
    elif rendered is not None:
        earlier = await idempotency.store_after(rendered)
        if earlier is not None:
            return _replay(earlier)
    return response


async def purge_expired_keys(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: deletes expired keys now and then."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                await purge_expired(app[POOL], app[SETTINGS].idempotency_ttl_seconds)
            except Exception:
                log.warning("could not purge expired idempotency keys", exc_info=True)

    task = asyncio.create_task(loop(), name="helix-idempotency-purge")
    yield
    await cancel_and_wait([task])
