"""Request ids, the access log and request metrics, the client's address, the rules for query
strings and the body size, and the headers every response carries."""

from __future__ import annotations

import logging
import re
import time
import uuid
import warnings

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.api import forwarded
from helix.api.metrics import observe, route_label
from helix.api.ratelimit import VERDICT
from helix.api.requests import checked_query, has_streamed_body, query_rule
from helix.appkeys import SETTINGS
from helix.auth.principal import CLIENT_ADDRESS, PRINCIPAL, REQUEST_ID, client_address
from helix.errors import PayloadTooLarge
from helix.inputs import check_text
from helix.logs import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if SANE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
    # The plain string key "request_id" is the contract every route module reads; aiohttp would
    # warn about a non-RequestKey key on every request.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[REQUEST_ID] = rid
    return await handler(request)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One access log line and the request metrics per request, once it is answered (a stream
    once it ends). The line names the path but not its query string, where a stream token may
    travel, and no header."""
    started = time.perf_counter()
    status = 500  # what the client sees of an exception that escapes every handler
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        seconds = time.perf_counter() - started
        observe(request, status, seconds)
        _log_access(request, status, seconds)


def _log_access(request: web.Request, status: int, seconds: float) -> None:
    principal = request.get(PRINCIPAL)
    if principal is None:
        who: dict[str, str | None] = {
            "principal_id": None,
            "principal_kind": "anonymous",
            "credential": None,
        }
    else:  # the kind is the role; the credential what it was proven with, never its value
        who = {
            "principal_id": str(principal.user_id),
            "principal_kind": principal.role.value,
            "credential": "api_key" if principal.key_id else "token",
        }
    route = route_label(request)
    latency_ms = round(seconds * 1000, 3)
    access_log.info(
        "%s %s %d %.1f ms",
        request.method,
        request.path,
        status,
        latency_ms,
        extra={
            "request_id": request.get(REQUEST_ID),
            **who,
            "method": request.method,
            "route": route,
            "path": request.path,
            "status": status,
            "latency_ms": latency_ms,
            "client": client_address(request),
        },
    )


@web.middleware
async def client_address_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The client's address (events' `source`, the anonymous rate limit): X-Forwarded-For is
    believed only from a peer in HELIX_TRUSTED_PROXIES."""
    trusted = forwarded.networks(request.app[SETTINGS].trusted_proxies)
    if trusted:
        address = forwarded.client_address(
            request.remote, request.headers.getall("X-Forwarded-For", ()), trusted
        )
        if address:
            request[CLIENT_ADDRESS] = address
    return await handler(request)


@web.middleware
async def query_text_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every query parameter, whatever route reads it, follows the rule for client text (no
    NUL, no lone surrogate): a filter never reaches the database with what it cannot hold.
    And it is one the route declares (`helix.api.requests.query_params`): a misspelt filter is
    a 422 listing the known names, never a filter silently ignored."""
    for name, value in request.query.items():
        check_text(name, name)
        check_text(value, name)
    match = request.match_info
    if match.http_exception is None:
        # Only a routed request has a handler whose parameters are known (others get their 404).
        request = checked_query(request, query_rule(match.handler))
    return await handler(request)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a declared oversized body before reading it; a chunked one is stopped while it
    is read (the application's client_max_size). A handler that streams its body bounds it
    itself (`helix.api.requests.streamed_body`)."""
    if request.match_info.http_exception is None and has_streamed_body(request.match_info.handler):
        return await handler(request)
    limit = request.app[SETTINGS].max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"the request body is {length} bytes, more than the limit of {limit}",
            max_bytes=limit,
        )
    return await handler(request)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, error or not, names its request and rate limit."""
    rid = request.get(REQUEST_ID)
    if rid:
        response.headers["X-Request-ID"] = str(rid)
    verdict = request.get(VERDICT)
    if verdict is not None and verdict.limit:
        response.headers.update(verdict.headers())
