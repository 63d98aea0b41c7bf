"""Request ids, the client's address, the rules for query strings and the body size, and the
headers every response carries."""

from __future__ import annotations

import re
import uuid
import warnings

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.api import forwarded
from helix.api.ratelimit import VERDICT
from helix.appkeys import SETTINGS
from helix.auth.principal import CLIENT_ADDRESS, REQUEST_ID
from helix.errors import HelixError
from helix.inputs import check_text

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class PayloadTooLarge(HelixError):
    code = "VALIDATION_ERROR"
    status = 413


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
    NUL, no lone surrogate): a filter never reaches the database with what it cannot hold."""
    for name, value in request.query.items():
        check_text(name, name)
        check_text(value, name)
    return await handler(request)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a declared oversized body before reading it; a chunked one is stopped while it
    is read (the application's client_max_size)."""
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
