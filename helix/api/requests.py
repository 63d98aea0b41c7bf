"""Small helpers every route module uses: the JSON body, integer queries, public routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from helix.errors import BadRequest, ValidationError
from helix.inputs import decode_json

F = TypeVar("F", bound=Callable[..., Any])


def public(handler: F) -> F:
    """Marks a handler that anonymous callers may use (every other route needs credentials)."""
    handler.__helix_public__ = True  # type: ignore[attr-defined]
    return handler


def is_public(handler: object) -> bool:
    return bool(getattr(handler, "__helix_public__", False))


def own_credentials(handler: F) -> F:
    """Marks a public handler that checks a credential of its own (the metrics token): the
    authentication middleware leaves its `Authorization` header alone."""
    handler.__helix_own_credentials__ = True  # type: ignore[attr-defined]
    return public(handler)


def has_own_credentials(handler: object) -> bool:
    return bool(getattr(handler, "__helix_own_credentials__", False))


def probe(handler: F) -> F:
    """Marks a health, readiness or metrics probe: public, never rate limited, and answered
    without looking up the caller's credentials (a probe must not need the database to say the
    database is down)."""
    handler.__helix_probe__ = True  # type: ignore[attr-defined]
    return public(handler)


def is_probe(handler: object) -> bool:
    return bool(getattr(handler, "__helix_probe__", False))


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object: 400 if it is not JSON, 422 if it is not an object or breaks
    a rule of `helix.inputs` (too deep, NUL, a lone surrogate, a number out of range)."""
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("the request needs a JSON body")
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    return body


def int_query(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"'{name}' must be an integer", field=name) from None
    if not low <= value <= high:
        raise ValidationError(f"'{name}' must be between {low} and {high}", field=name)
    return value
