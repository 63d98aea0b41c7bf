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
from helix.api.idempotency import KEY_PATTERN
from helix.api.requests import is_public, public, query_rule
from helix.api.scopes import PLACEHOLDER, ROUTE_SCOPES, template
from helix.api.validation import RequestSchema, settled
from helix.appkeys import SETTINGS
from helix.domain.user.scopes import SCOPES

routes = web.RouteTableDef()
F = TypeVar("F", bound=Callable[..., Any])


def describe(
    *,
    request: RequestSchema | None = None,
    responses: dict[str, Any] | None = None,
    body_required: bool = True,
    yields: dict[str, str] | None = None,
) -> Callable[[F], F]:
    """Adds a request body schema and/or responses to a handler's OpenAPI operation: the
    document shows `request.document(settings)`, the very schema the handler validates with."""

    def decorate(handler: F) -> F:
        extra: dict[str, Any] = {}
        if request is not None:
            extra["request"] = request
            extra["request_required"] = body_required
        if responses is not None:
            extra["responses"] = responses
        if yields:
            extra["yields"] = yields
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
    "schema": {"type": "string", "pattern": KEY_PATTERN},
}
LAST_EVENT_ID: dict[str, Any] = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this log position (wins over `after`)",
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
}
# One message of an event stream as an EventSource reads it (OpenAPI 3.1 has a
# `text/event-stream` schema describe each event): a log event (`id` its position, `data`
# its JSON), or a control message (`caught_up`, `heartbeat`, `done`, `error`).
SERVER_SENT_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "minLength": 1},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
JSON_OBJECT: dict[str, Any] = {"type": "object"}
ID: dict[str, Any] = {"type": "string", "format": "uuid"}
TEXT: dict[str, Any] = {"type": "string"}


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
        return {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ServerSentEvent"}}}
    return {"application/json": {"schema": JSON_OBJECT}}


def _given(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a text one is never empty (`checked_query` refuses that)."""
    if schema.get("type") == "string" and "minLength" not in schema and "enum" not in schema:
        return {**schema, "minLength": 1}
    return schema


def _parameters(method: str, path: str, handler: Any, settings: object) -> list[dict[str, Any]]:
    # An `…_id` segment matches only a UUID (`helix.api.handlers.uuid_ids`).
    found: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": ID if p.endswith("_id") else TEXT}
        for p in PLACEHOLDER.findall(path)
    ]
    rule = query_rule(handler)
    found += [
        {
            "name": name,
            "in": "query",
            "required": name in rule.required,
            "schema": _given(settled(schema, settings)),
        }
        for name, schema in sorted(rule.schemas.items())
    ]
    if method == "POST":
        found.append(IDEMPOTENCY_KEY)
    if "text/event-stream" in _media(path):
        found.append(LAST_EVENT_ID)
    return found


def _operation(method: str, path: str, handler: Any, settings: object) -> dict[str, Any]:
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
    params = _parameters(method, path, handler, settings)
    if params:
        operation["parameters"] = params
    if "request" in extra:
        operation["requestBody"] = {
            "required": extra.get("request_required", True),
            "content": {"application/json": {"schema": extra["request"].document(settings)}},
        }
    scope = ROUTE_SCOPES.get((method, path))
    if is_public(handler) and scope is None:
        operation["security"] = []
    elif scope is not None:
        # The scope a credential needs here (OpenAPI 3.1 lets any scheme list required roles).
        operation["security"] = [{"bearer": [scope]}, {"apiKey": [scope]}]
    return operation


def _link(
    paths: dict[str, dict[str, Any]], path: str, operation: dict[str, Any], extra: dict[str, Any]
) -> None:
    """OpenAPI links from an operation that makes a resource to the operations on it, so a
    client (or a test tool) can follow them: a POST answering 201 to the item under its path
    (the body's `id`), and an operation's `yields` (path parameter: the body's field) to every
    operation whose path parameters it then knows (with the request's own)."""
    own = PLACEHOLDER.findall(path)
    status = next((s for s in ("201", "202", "200") if s in operation["responses"]), None)
    if status is None:
        return
    fields = {name: f"$response.body#/{field}" for name, field in extra.get("yields", {}).items()}
    if operation is paths[path].get("post") and status == "201":
        for other in paths:
            found = PLACEHOLDER.findall(other)
            if other.startswith(path + "/{") and len(found) == len(own) + 1:
                fields.setdefault(found[-1], "$response.body#/id")
    if not fields:
        return
    known = {**{name: f"$request.path.{name}" for name in own}, **fields}
    links: dict[str, Any] = {}
    for other, operations in paths.items():
        needed = PLACEHOLDER.findall(other)
        if other == path or not set(needed) & set(fields) or not set(needed) <= set(known):
            continue
        for target in operations.values():
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": {name: known[name] for name in needed},
            }
    if links:
        operation["responses"][status] = {**operation["responses"][status], "links": links}


SCOPE_TEXT = (
    "Each operation lists the scope it needs; a credential may use its role's scopes, "
    "narrowed to the scopes an API key was created with: "
    + "; ".join(f"`{name}`: {text}" for name, text in SCOPES.items())
    + "."
)


# `helix.inputs` refuses NUL in any string a client sends (PostgreSQL cannot store it): said in
# the document by a pattern on each string without a stricter rule, and on each map's keys.
NUL_FREE = "^[^\\x00]*$"
_STRICT = ("pattern", "enum", "const", "format")


def _nul_free(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_nul_free(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    found = {k: _nul_free(v) if k not in ("enum", "const", "examples") else v
             for k, v in schema.items()}  # fmt: skip
    kinds = found.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if "string" in kinds and not any(k in found for k in _STRICT):
        found["pattern"] = NUL_FREE
    if "object" in kinds and found.get("additionalProperties") is not False:
        found.setdefault("propertyNames", {"pattern": NUL_FREE})
    return found


def text_rule(operation: dict[str, Any]) -> dict[str, Any]:
    """The operation with the rule for client text in its parameters' and body's schemas."""
    if "parameters" in operation:
        operation["parameters"] = [
            {**param, "schema": _nul_free(param["schema"])} for param in operation["parameters"]
        ]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        body["schema"] = _nul_free(body["schema"])
    return operation


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    settings = app[SETTINGS]
    for method, path, handler in served_routes(app):
        operation = _operation(method, path, handler, settings)
        paths.setdefault(path, {})[method.lower()] = text_rule(operation)
    for method, path, handler in served_routes(app):
        _link(paths, path, paths[path][method.lower()], getattr(handler, "__openapi__", {}))
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
            "schemas": {"Error": ERROR_SCHEMA, "ServerSentEvent": SERVER_SENT_EVENT},
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
