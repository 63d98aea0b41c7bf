"""Request helpers of the route modules: bodies, callers, path and query values, replies.

Each body is described once, as a `RequestSchema` that the OpenAPI document publishes (through
`documented`) and that `validated_body` enforces with a JSON Schema validator, so the document
and the server cannot disagree.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from helix.api.idempotency import IDEMPOTENCY
from helix.api.openapi import JSON_OBJECT, describe
from helix.api.requests import int_query, read_json
from helix.api.validation import NOT_BLANK, RequestSchema
from helix.appkeys import SERVICES, SETTINGS, STORE
from helix.audit import time_travel
from helix.auth.principal import client_address, request_id, require_role
from helix.domain.user import Role
from helix.errors import NotFound, ValidationError
from helix.services import Caller, Services
from helix.streams.position import HEADER as POSITION_HEADER

F = TypeVar("F", bound=Callable[..., Any])
READERS = (Role.ADMIN, Role.USER, Role.AUDITOR)
WRITERS = (Role.ADMIN, Role.USER)
# The query parameters of a list paged by offset (`paging`).
PAGING = ("limit", "offset")


def documented(
    request: RequestSchema | None = None,
    *,
    body_required: bool = True,
    responses: dict[str, Any] | None = None,
    yields: dict[str, str] | None = None,
    **by_status: str,
) -> Callable[[F], F]:
    """OpenAPI for a handler: its body schema (optional unless `body_required`), and its
    responses by status (`_201="created"`, a JSON body unless 204) or as OpenAPI `responses`;
    any other status is an error in the envelope. `yields` names the ids its answer holds
    (path parameter: body field), which the document links to the operations taking them."""
    described: dict[str, Any] = dict(responses or {})
    for status, text in by_status.items():
        code = status.lstrip("_")
        described[code] = (
            {"description": text}
            if code in ("204", "304")
            else {"description": text, "content": {"application/json": {"schema": JSON_OBJECT}}}
        )
    described.setdefault("default", {"$ref": "#/components/responses/Error"})
    return describe(
        request=request, responses=described, body_required=body_required, yields=yields
    )


def strings(*, max_length: int, min_length: int = 0) -> dict[str, Any]:
    """A text of these lengths; one that may not be empty may not be blank either."""
    schema: dict[str, Any] = {"type": "string", "minLength": min_length, "maxLength": max_length}
    if min_length > 0:
        schema["pattern"] = NOT_BLANK
    return schema


def choice(values: Iterable[enum.Enum]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


# --- request helpers ------------------------------------------------------------------------


async def validated_body(request: web.Request, schema: RequestSchema) -> dict[str, Any]:
    """The body, decoded by the one JSON decoder and then validated against `schema`."""
    return schema.validated(await read_json(request), request.app[SETTINGS])


async def optional_body(request: web.Request, schema: RequestSchema) -> dict[str, Any]:
    """Like `validated_body`, but an empty body is an empty object."""
    if not (await request.read()).strip():
        return {}
    return await validated_body(request, schema)


def caller(
    request: web.Request, *, write: bool = False, roles: Iterable[Role] | None = None
) -> Caller:
    """The service layer's caller for this request (403 for a role that may not do this):
    readers, writers, or the given `roles`."""
    allowed = tuple(roles) if roles is not None else WRITERS if write else READERS
    principal = require_role(request, *allowed)
    return Caller(
        user_id=str(principal.user_id),
        name=principal.username,
        actor=principal.actor,
        sees_everything=principal.sees_everything,
        admin=principal.role is Role.ADMIN,
        request_id=request_id(request) or str(uuid.uuid4()),
        source=client_address(request),
        idempotency=request.get(IDEMPOTENCY),
    )


def services(request: web.Request) -> Services:
    """The process's services (built once, by the composition root)."""
    return request.app[SERVICES]


# A path segment named `…_id` matches only a UUID in its canonical form, so a path whose id is
# not one names no resource (the router's 404, on every route alike) and never reaches a
# handler or another route's `Allow` (`/users/me` is not `/users/{user_id}`).
UUID_SEGMENT = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*_id)\}")


def uuid_ids(routes: Iterable[web.AbstractRouteDef]) -> list[web.AbstractRouteDef]:
    """The route table with each plain `{…_id}` placeholder restricted to a UUID."""
    rewritten: list[web.AbstractRouteDef] = []
    for route in routes:
        if isinstance(route, web.RouteDef):
            path = _ID_PLACEHOLDER.sub(rf"{{\1:{UUID_SEGMENT}}}", route.path)
            route = web.RouteDef(route.method, path, route.handler, route.kwargs)
        rewritten.append(route)
    return rewritten


def path_id(request: web.Request, name: str, what: str) -> uuid.UUID:
    """A UUID from the path; anything else names no resource (404)."""
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"{what} not found", **{name: raw}) from None


def query_id(request: web.Request, name: str) -> uuid.UUID | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError(f"'{name}' must be a UUID", field=name) from None


def paging(request: web.Request, default: int = 50) -> tuple[int, int]:
    limit = int_query(request, "limit", default)
    offset = int_query(request, "offset", 0)
    return limit, offset


def listing(request: web.Request, items: list[Any], *, more: bool, **cursor: int) -> dict[str, Any]:
    """The one list envelope of every list route: `items`, `has_more`, and `next`, the link to
    the next page (this request's path and query with `cursor` moved on; null on the last)."""
    following = None
    if more:
        following = str(request.rel_url.update_query({k: str(v) for k, v in cursor.items()}))
    return {"items": items, "next": following, "has_more": more}


def offset_listing(
    request: web.Request, items: list[Any], total: int, offset: int
) -> dict[str, Any]:
    """`listing` for a list paged by `offset` (newest first): more if `total` goes on."""
    end = offset + len(items)
    return listing(request, items, more=end < total, offset=end)


async def as_of(request: web.Request) -> time_travel.AsOf:
    """`?as_of=`, a log position or an RFC 3339 time; a position past the log's head names a
    state that does not exist (yet): a 404 naming the head, never an echo of it."""
    found = time_travel.parse_as_of(request.query["as_of"])
    if found.position is not None:
        head = await request.app[STORE].head()
        if found.position > head:
            raise NotFound(
                f"no state at 'as_of' {found.position} yet: the log's head is {head}",
                field="as_of",
                head=head,
            )
    return found


def position(request: web.Request) -> int:
    """The log position a read reflects, taken before the read: the read models hold at least
    every event up to it, so a client that subscribes from it misses nothing."""
    watcher = request.app[STORE].head_watcher
    return watcher.head if watcher is not None else 0


def reply(
    body: Any, *, status: int = 200, at: int | None = None, location: str | None = None
) -> web.Response:
    headers: dict[str, str] = {}
    if at is not None:
        headers[POSITION_HEADER] = str(at)
    if location is not None:
        headers["Location"] = location
    return web.json_response(body, status=status, headers=headers)
