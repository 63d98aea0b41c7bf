"""Cross-origin requests from browser pages on the origins in HELIX_CORS_ORIGINS (the Fetch
standard's CORS protocol).

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed
origin is answered here, before authentication and rate limiting: a browser sends it without
credentials, and refusing it would hide every answer of the real request. Every other response
to an allowed origin, errors included, says who may read it and which headers the page may see
(`on_response_prepare`, so 401s, 404s, 429s and 503s are readable to the page as well). A
request from any other origin is answered as if CORS did not exist: no `Access-Control-*`
header, so the browser keeps the response from the page.

aiohttp-cors registers a preflight route per resource, which would pass through the
authentication middleware and leave unrouted paths without headers, so the few rules live here.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from helix.appkeys import SETTINGS
from helix.config import Settings

# What a page may send beyond the CORS-safelisted headers.
ALLOWED_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Idempotency-Key",
    "Last-Event-ID",
    "Content-Type",
    "X-Request-ID",
)
# What a page may read beyond the CORS-safelisted response headers.
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-Helix-Position",
    "Location",
    "Retry-After",
    "Idempotent-Replayed",
    "WWW-Authenticate",
)
# The methods of a path the router does not know: the real request then gets its 404.
ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_origin(settings: Settings, origin: str | None) -> str | None:
    """The `Access-Control-Allow-Origin` value for a request from `origin`, or None."""
    if not origin or not settings.cors_origins:
        return None
    if origin in settings.cors_origins:
        return origin
    if "*" in settings.cors_origins:
        # A credentialed request needs its origin named (settings refuse * with credentials).
        return origin if settings.cors_allow_credentials else "*"
    return None


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ORIGIN in request.headers
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def _methods(request: web.Request) -> list[str]:
    refused = request.match_info.http_exception
    if isinstance(refused, web.HTTPMethodNotAllowed):
        return sorted(refused.allowed_methods - {hdrs.METH_HEAD})
    return list(ANY_METHOD)


def _vary(response: web.StreamResponse, *names: str) -> None:
    present = [v.strip() for raw in response.headers.getall(hdrs.VARY, ()) for v in raw.split(",")]
    lowered = {v.lower() for v in present}
    added = [name for name in names if name.lower() not in lowered]
    if added:
        response.headers[hdrs.VARY] = ", ".join(filter(None, present + added))


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    origin = allowed_origin(settings, request.headers.get(hdrs.ORIGIN))
    if origin is None or not is_preflight(request):
        return await handler(request)
    response = web.Response(status=204)
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(_methods(request))
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(ALLOWED_HEADERS)
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(settings.cors_max_age)
    _vary(response, "Access-Control-Request-Method", "Access-Control-Request-Headers")
    return response


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response to an allowed origin, preflight or not."""
    settings = request.app[SETTINGS]
    if settings.cors_origins and settings.cors_origins != ("*",):
        _vary(response, "Origin")  # a cache must not hand one origin's answer to another
    origin = allowed_origin(settings, request.headers.get(hdrs.ORIGIN))
    if origin is None:
        return
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    if settings.cors_allow_credentials:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
    if not is_preflight(request):
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)
