"""Small helpers every route module uses: the JSON body, query parameters, public routes."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
from aiohttp import web
from multidict import MultiDict

from helix import globs
from helix.api.validation import Setting, settled
from helix.appkeys import SETTINGS
from helix.errors import BadRequest, ValidationError
from helix.inputs import decode_json

F = TypeVar("F", bound=Callable[..., Any])


def public(handler: F) -> F:
    """Marks a handler that anonymous callers may use (every other route needs credentials)."""
    handler.__helix_public__ = True  # type: ignore[attr-defined]
    return handler


@attrs.frozen
class QueryRule:
    """The query parameters a handler reads, each with its schema (what the OpenAPI document
    shows and the readers below enforce; a bound may be a `Setting`), and other names it takes
    for one of them."""

    schemas: Mapping[str, Mapping[str, Any]]
    aliases: Mapping[str, str]
    required: frozenset[str] = frozenset()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.schemas)


NO_QUERY = QueryRule({}, {})
# A page of a list: at most MAX_PAGE items unless a route says otherwise.
MAX_PAGE = 200
MAX_OFFSET = 2**31 - 1
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_FLAG: dict[str, Any] = {"type": "string", "enum": ["true", "false", "1", "0"]}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
# Each query parameter's JSON schema, said once: the OpenAPI document shows it for every route
# that declares the name, with the bounds the route gives it (`query_params(bounds=...)`).
QUERY: Mapping[str, dict[str, Any]] = {
    "access_token": _TEXT,
    "actor": _TEXT,
    "after": {"type": "integer", "minimum": 0, "maximum": 2**62},
    "archived": {"type": "string", "enum": ["true", "false", "all"]},
    "as_of": {"anyOf": [{**_COUNT, "maximum": 2**62}, _TIME]},
    "change": _TEXT,
    "dead_lettered": {"type": "string", "enum": ["true", "false"]},
    "fencing_token": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "follow": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
    "include_revoked": _FLAG,
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
    "online": _FLAG,
    "phase": _TEXT,
    "priority": _TEXT,
    "project_id": {"type": "string", "format": "uuid"},
    "project_type": _TEXT,
    "role": _TEXT,
    "sha256": _TEXT,
    "since": _TIME,
    "size": _COUNT,
    "status": _TEXT,
    "stream_id": _TEXT,
    "type": {"type": "string", "pattern": globs.LIST_PATTERN},
    "until": _TIME,
    "user_id": {"type": "string", "format": "uuid"},
    "wait": _COUNT,
}
# Names clients bring from elsewhere, and the one Helix reads instead (said in the refusal).
MISNAMED = {"types": "type", "page": "offset", "page_size": "limit", "per_page": "limit"}


def query_params(
    *names: str,
    aliases: Mapping[str, str] | None = None,
    bounds: Mapping[str, tuple[int | Setting, int | Setting]] | None = None,
    choices: Mapping[str, Iterable[enum.Enum]] | None = None,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
    required: Iterable[str] = (),
) -> Callable[[F], F]:
    """Declares the query parameters a handler reads; `aliases` maps another name to one of
    them (`event_type` for `type`). This route's schema of a parameter is QUERY's, with the
    range `bounds` gives it (`{"limit": (1, 1000)}`), the values of the enum `choices` gives
    it, or the keywords `schemas` gives it; the `required` ones must be given. Any other name
    is refused with 422 before the handler runs (`checked_query`), and a handler that declares
    none takes none."""
    assert set(names) <= set(QUERY), "every query parameter has a schema in QUERY"
    given: dict[str, dict[str, Any]] = {name: {} for name in names}
    for name, (low, high) in (bounds or {}).items():
        given[name].update(minimum=low, maximum=high)
    for name, values in (choices or {}).items():
        given[name].update(type="string", enum=[v.value for v in values])
    for name, schema in (schemas or {}).items():
        given[name].update(schema)
    assert set(given) == set(names), "bounds, choices and schemas are of declared parameters"
    rule = QueryRule(
        {name: {**QUERY[name], **given[name]} for name in names},
        dict(aliases or {}),
        frozenset(required),
    )
    assert rule.required <= rule.names, "a required parameter is declared"
    assert set(rule.aliases.values()) <= rule.names, "an alias names a declared parameter"

    def mark(handler: F) -> F:
        handler.__helix_query__ = rule  # type: ignore[attr-defined]
        return handler

    return mark


def query_rule(handler: object) -> QueryRule:
    rule = getattr(handler, "__helix_query__", NO_QUERY)
    assert isinstance(rule, QueryRule)
    return rule


def checked_query(request: web.Request, rule: QueryRule) -> web.Request:
    """The request if its query names are all `rule`'s, with each alias renamed to the name it
    stands for (a clone of the request); 422 naming the known names otherwise, or if a
    parameter is given under both its names."""
    given = set(request.query)
    unknown = sorted(given - rule.names - set(rule.aliases))
    if unknown:
        name = unknown[0]
        known = sorted(rule.names | set(rule.aliases))
        listed = ", ".join(known) or "none"
        instead = MISNAMED.get(name)
        hint = f"; use '{instead}'" if instead in rule.names else ""
        raise ValidationError(
            f"unknown query parameter '{name}'{hint} (known: {listed})", field=name, known=known
        )
    for name, value in request.query.items():
        if value == "":
            raise ValidationError(
                f"query parameter '{name}' is empty; leave it out for no filter", field=name
            )
    missing = sorted(rule.required - given)
    if missing:
        raise ValidationError(f"query parameter '{missing[0]}' is required", field=missing[0])
    used = {alias: name for alias, name in rule.aliases.items() if alias in given}
    if not used:
        return request
    for alias, name in used.items():
        if name in given:
            raise ValidationError(
                f"give '{name}' or its alias '{alias}', not both", field=alias, alias_of=name
            )
    renamed = MultiDict((used.get(k, k), v) for k, v in request.query.items())
    return request.clone(rel_url=request.rel_url.with_query(renamed))


def streamed_body(handler: F) -> F:
    """Marks a handler that reads its body as a stream and bounds it itself (an artifact
    upload): the body size middleware leaves it to the handler."""
    handler.__helix_streamed_body__ = True  # type: ignore[attr-defined]
    return handler


def has_streamed_body(handler: object) -> bool:
    return bool(getattr(handler, "__helix_streamed_body__", False))


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


def _schema(request: web.Request, name: str) -> Mapping[str, Any]:
    """This route's schema of the query parameter `name`, its settings filled in."""
    schema = query_rule(request.match_info.handler).schemas[name]
    return settled(schema, request.app[SETTINGS])  # type: ignore[no-any-return]


# An integer as JSON writes one (Python's int() would also take "+1", " 1" and "1_0").
INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")
# A number as JSON writes one, at most 32 characters (float() would also take "1_0", " 1",
# "inf" and "nan").
NUMBER = re.compile(r"(?=.{1,32}\Z)-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
TRUE, FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def flag_query(request: web.Request, name: str) -> bool | None:
    """The yes-or-no query parameter `name` (None when absent): one of the values its schema
    lists (`true`, `1`, `false`, `0`), or a 422 naming them."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw in TRUE or raw in FALSE:
        return raw in TRUE
    allowed = QUERY[name]["enum"]
    raise ValidationError(
        f"'{name}' must be one of: {', '.join(allowed)}", field=name, allowed_values=allowed
    )


def choice_query(request: web.Request, name: str) -> str | None:
    """The query parameter `name` (None when absent), one of the values its route's schema
    lists (`query_params(choices=...)`), or a 422 naming them."""
    raw = request.query.get(name)
    if raw is None:
        return None
    allowed = _schema(request, name)["enum"]
    if raw not in allowed:
        raise ValidationError(
            f"'{name}' must be one of: {', '.join(allowed)}", field=name, allowed_values=allowed
        )
    return raw


def int_query(request: web.Request, name: str, default: int) -> int:
    """The integer query parameter `name` (`default` when absent), within the range its route
    declares for it (`query_params`)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not INTEGER.fullmatch(raw):
        raise ValidationError(f"'{name}' must be an integer", field=name)
    value = int(raw)
    _within(request, name, value)
    return value


def number_query(request: web.Request, name: str, default: float) -> float:
    """Like `int_query`, for a number that may have a fraction (`?wait=0.5`)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not NUMBER.fullmatch(raw):
        raise ValidationError(f"'{name}' must be a number", field=name)
    value = float(raw)
    _within(request, name, value)
    return value


def _within(request: web.Request, name: str, value: float) -> None:
    schema = _schema(request, name)
    low, high = schema.get("minimum", 0), schema.get("maximum", 2**63 - 1)
    if not low <= value <= high:
        raise ValidationError(
            f"'{name}' must be between {low} and {high}", field=name, minimum=low, maximum=high
        )
