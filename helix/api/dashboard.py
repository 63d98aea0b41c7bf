"""The dashboard: a static page, its script and its style sheet, shipped inside the package and
served from the API's own origin. It is a client like any other: everything it shows it reads
through the public API with the user's own credential, so these routes hold no data and need
none.

The files are read once, at import, from the package; each answer carries a strict Content
Security Policy (scripts, styles and connections from this origin only; no inline script, no
frames), so a value that reached the page through the API could never run as code.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import attrs
from aiohttp import web

from helix.api.requests import public
from helix.errors import NotFound

routes = web.RouteTableDef()

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load() -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for entry in resources.files("helix.dashboard").iterdir():
        suffix = entry.name[entry.name.rfind(".") :]
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:32]
            assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], f'"{digest}"')
    return assets


ASSETS = _load()


def _answer(request: web.Request, asset: Asset, cache: str) -> web.Response:
    headers = {
        "Content-Security-Policy": POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": cache,
        "ETag": asset.etag,
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=asset.body, headers=headers)
    response.headers["Content-Type"] = asset.content_type
    return response


@routes.get("/")
@public
async def dashboard(request: web.Request) -> web.Response:
    """The dashboard's page (HTML); it reads and changes everything through this API."""
    return _answer(request, ASSETS["index.html"], "no-cache")


@routes.get("/ui/{asset}")
@public
async def dashboard_asset(request: web.Request) -> web.Response:
    """One of the dashboard's files (its script, style sheet or icon)."""
    asset = ASSETS.get(request.match_info["asset"])
    if asset is None or request.match_info["asset"] == "index.html":
        raise NotFound("no such resource")
    return _answer(request, asset, "no-cache")
