"""The OpenAPI 3.1 document, built from the application's own router so it cannot drift.

Each route contributes its method and path, path parameters from `{name}` placeholders, the
first line of the handler's docstring as summary, and, when the handler has
`__openapi__ = {"request": <JSON schema>, "responses": {...}}` (set by `describe`), a request
body and responses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from helix import __version__ as helix_version
from helix.api.requests import is_public, public
from helix.api.validation import RequestSchema

routes = web.RouteTableDef()
F = TypeVar("F", bound=Callable[..., Any])


def describe(
    *,
    request: RequestSchema | None = None,
    responses: dict[str, Any] | None = None,
    body_required: bool = True,
) -> Callable[[F], F]:
    """Adds a request body schema and/or responses to a handler's OpenAPI operation: the
    document shows `request.document`, the very schema the handler validates with."""

    def decorate(handler: F) -> F:
        extra: dict[str, Any] = {}
        if request is not None:
            extra["request"] = request.document
            extra["request_required"] = body_required
        if responses is not None:
            extra["responses"] = responses
        handler.__openapi__ = extra  # type: ignore[attr-defined]
        return handler

    return decorate


# Filled on first use: the router is frozen once the app serves, so one build is enough.
DOCUMENT = web.AppKey("openapi_document", dict)
# `{name}` or `{name:regex}`, the regex with at most one level of braces (as aiohttp allows).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(?:[^{}]|\{[^{}]*\})*)?\}")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": [
                        "UNAUTHORIZED",
                        "FORBIDDEN",
                        "NOT_FOUND",
                        "VALIDATION_ERROR",
                        "CONFLICT",
                        "RATE_LIMIT_EXCEEDED",
                        "INTERNAL_ERROR",
                        "SERVICE_UNAVAILABLE",
                    ],
                },
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        },
        "request_id": {"type": "string"},
    },
}


def served_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(METHOD, path template, handler) for every route, without the HEAD twins of GETs."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        found.append((route.method, PLACEHOLDER.sub(r"{\1}", resource.canonical), route.handler))
    return found


def _operation(method: str, path: str, handler: Any) -> dict[str, Any]:
    doc = (handler.__doc__ or "").strip().splitlines()
    extra: dict[str, Any] = getattr(handler, "__openapi__", {})
    segments = [s for s in path.split("/") if s and not s.startswith("{")]
    tag = segments[2] if segments[:2] == ["api", "v1"] and len(segments) > 2 else "operations"
    operation: dict[str, Any] = {
        "operationId": f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}",
        "summary": doc[0] if doc else handler.__name__.replace("_", " "),
        "tags": [tag],
        "responses": extra.get("responses")
        or {
            "2XX": {"description": "success", "content": {"application/json": {}}},
            "default": {"$ref": "#/components/responses/Error"},
        },
    }
    params = PLACEHOLDER.findall(path)
    if params:
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
    if "request" in extra:
        operation["requestBody"] = {
            "required": extra.get("request_required", True),
            "content": {"application/json": {"schema": extra["request"]}},
        }
    if is_public(handler):
        operation["security"] = []
    return operation


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in served_routes(app):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, handler)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Helix API",
            "version": helix_version,
            "description": "Event-sourced control plane for AI development work.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a JWT from /api/v1/auth/login, or an API key",
                },
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                "Error": {
                    "description": "an error, in the error envelope",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


@routes.get("/api/v1/openapi.json")
@public
async def openapi_document(request: web.Request) -> web.Response:
    """This API's OpenAPI 3.1 document."""
    cache = request.app[DOCUMENT]
    if not cache:
        cache.update(build_document(request.app))
    return web.json_response(cache)
