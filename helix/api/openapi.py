"""The OpenAPI 3.1 document, built from the application's own router so it cannot drift.

Each route contributes its method and path, path parameters from `{name}` placeholders, the
first line of the handler's docstring as summary, and, when the handler has
`__openapi__ = {"request": <JSON schema>, "responses": {...}}` (set by `describe`), a request
body and responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from helix import __version__ as helix_version
from helix.api.requests import is_public, public, query_rule
from helix.api.scopes import PLACEHOLDER, ROUTE_SCOPES, template
from helix.api.validation import RequestSchema
from helix.domain.user.scopes import SCOPES

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
        found.append((route.method, template(resource.canonical), route.handler))
    return found


# Headers some operations read: every POST takes an `Idempotency-Key`; a stream resumes after
# the `Last-Event-ID` an EventSource sends when it reconnects.
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key and body get the stored response back",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
LAST_EVENT_ID: dict[str, Any] = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this log position (wins over `after`)",
    "schema": {"type": "string"},
}
JSON_OBJECT: dict[str, Any] = {"type": "object"}


def summary(handler: Any) -> str:
    """The docstring's first paragraph on one line (a first line may end mid-sentence)."""
    paragraph = (handler.__doc__ or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split()) or handler.__name__.replace("_", " ").capitalize() + "."


def _media(path: str) -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    if path == "/metrics":
        return {"text/plain": text}
    if path == "/":
        return {"text/html": text}
    if path.startswith("/ui/"):
        return {kind: text for kind in ("text/html", "text/javascript", "text/css")}
    if path.endswith("/stream") or "/stream/" in path:
        return {"text/event-stream": text}
    return {"application/json": {"schema": JSON_OBJECT}}


def _parameters(method: str, path: str, handler: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in PLACEHOLDER.findall(path)
    ]
    found += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in sorted(query_rule(handler).schemas.items())
    ]
    if method == "POST":
        found.append(IDEMPOTENCY_KEY)
    if "text/event-stream" in _media(path):
        found.append(LAST_EVENT_ID)
    return found


def _operation(method: str, path: str, handler: Any) -> dict[str, Any]:
    extra: dict[str, Any] = getattr(handler, "__openapi__", {})
    segments = [s for s in path.split("/") if s and not s.startswith("{")]
    tag = segments[2] if segments[:2] == ["api", "v1"] and len(segments) > 2 else "operations"
    operation: dict[str, Any] = {
        "operationId": f"{handler.__module__.rsplit('.', 1)[-1]}.{handler.__name__}",
        "summary": summary(handler),
        "tags": [tag],
        "responses": extra.get("responses")
        or {
            "2XX": {"description": "success", "content": _media(path)},
            "default": {"$ref": "#/components/responses/Error"},
        },
    }
    params = _parameters(method, path, handler)
    if params:
        operation["parameters"] = params
    if "request" in extra:
        operation["requestBody"] = {
            "required": extra.get("request_required", True),
            "content": {"application/json": {"schema": extra["request"]}},
        }
    scope = ROUTE_SCOPES.get((method, path))
    if is_public(handler) and scope is None:
        operation["security"] = []
    elif scope is not None:
        # The scope a credential needs here (OpenAPI 3.1 lets any scheme list required roles).
        operation["security"] = [{"bearer": [scope]}, {"apiKey": [scope]}]
    return operation


SCOPE_TEXT = (
    "Each operation lists the scope it needs; a credential may use its role's scopes, "
    "narrowed to the scopes an API key was created with: "
    + "; ".join(f"`{name}`: {text}" for name, text in SCOPES.items())
    + "."
)


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
                    "description": "a JWT from /api/v1/auth/login, or an API key. " + SCOPE_TEXT,
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": SCOPE_TEXT,
                },
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
