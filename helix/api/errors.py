"""Every error leaves as `{"error": {"code", "message", "details"}, "request_id"}`.

Helix's own exceptions carry their code and status; aiohttp's HTTP exceptions (the router's 404
and 405, the 413 of an oversized body) are mapped by status; a database that cannot be reached or
a connection that dropped is a 503 the caller may retry; anything else is a logged 500 that shows
no stack trace. Every 429 and 503 says when to come back (`Retry-After`). What counts as an
unavailable database is `helix.database.database_unavailable`'s to say.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from helix.appkeys import SETTINGS
from helix.auth.principal import request_id
from helix.database import UNAVAILABLE_RETRY_AFTER, database_unavailable
from helix.errors import HelixError, RateLimited, error_body

log = logging.getLogger(__name__)

CODES_BY_STATUS = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}
MESSAGES_BY_STATUS = {
    404: "no such resource",
    405: "this resource does not allow that method",
    413: "the request body is too large",
}
# Headers of an aiohttp exception that still matter once it becomes an envelope.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def code_for_status(status: int) -> str:
    if status in CODES_BY_STATUS:
        return CODES_BY_STATUS[status]
    return "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"


def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = error_body(code, message, details, request_id(request))
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def retry_after(exc: HelixError) -> int:
    """Whole seconds (at least one) before a refused caller should try again."""
    if isinstance(exc, RateLimited):
        return max(1, math.ceil(float(exc.details.get("retry_after_seconds") or 1)))
    return UNAVAILABLE_RETRY_AFTER


def from_helix_error(request: web.Request, exc: HelixError) -> web.Response:
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="helix"'
    if exc.status in (429, 503):
        headers["Retry-After"] = str(retry_after(exc))
    return error_response(request, exc.status, exc.code, exc.message, exc.details, headers)


def unavailable_response(request: web.Request, exc: BaseException) -> web.Response:
    log.warning(
        "the database could not serve %s %s (request %s), answered 503: %s: %s",
        request.method,
        request.path,
        request_id(request),
        type(exc).__name__,
        exc,
    )
    details: dict[str, Any] = {"reason": type(exc).__name__}
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        details["sqlstate"] = sqlstate
    return error_response(
        request,
        503,
        "SERVICE_UNAVAILABLE",
        "the database is not reachable or not ready; try again shortly",
        details,
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


def from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    status = exc.status
    details: dict[str, Any] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        details = {"method": exc.method, "allowed_methods": sorted(exc.allowed_methods)}
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        details = {"max_bytes": request.app[SETTINGS].max_body_bytes}
    message = MESSAGES_BY_STATUS.get(status) or exc.reason
    if exc.text and not exc.text.startswith(f"{status}:"):
        message = exc.text
    headers = {k: exc.headers[k] for k in KEPT_HEADERS if k in exc.headers}
    return error_response(request, status, code_for_status(status), message, details, headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HelixError as exc:
        if exc.status == 503:
            log.warning("request %s unavailable: %s", request_id(request), exc.message)
        elif exc.status >= 500:
            log.error("request %s failed: %s", request_id(request), exc.message)
        return from_helix_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        return from_http_exception(request, exc)
    except json.JSONDecodeError as exc:
        # A handler that called request.json() on a malformed body.
        return error_response(
            request, 400, "VALIDATION_ERROR", f"the body is not valid JSON: {exc}"
        )
    except Exception as exc:
        if database_unavailable(exc):
            return unavailable_response(request, exc)
        log.exception(
            "unexpected error in %s %s (request %s)",
            request.method,
            request.path,
            request_id(request),
        )
        return error_response(request, 500, "INTERNAL_ERROR", "an internal error occurred")
