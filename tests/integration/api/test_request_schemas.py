"""The request schemas the OpenAPI document shows are the ones the server enforces.

For every operation with a request body in the served document, a body valid by that schema is
built from the document alone; then, one rule at a time, a copy that breaks exactly that rule
(`required`, `additionalProperties`, `propertyNames`, `type`, `enum`, `format`, `pattern`,
`minLength`, `maxLength`, `minimum`, `maximum`, `exclusiveMinimum`, `minItems`, `maxItems`) is
sent. Each is a 422 VALIDATION_ERROR naming the field by its JSON path and the rule, and none
appends an event.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from helix.api.openapi import NUL_FREE
from helix.api.validation import NOT_BLANK, _regex
from helix.bootstrap import LogNode
from helix.inputs import MAX_INT, MIN_INT
from helix.webhooks.signatures import SECRET_PATTERN
from helix.webhooks.ssrf import URL_PATTERN

Client = TestClient[Any, Any]
Path = tuple[str | int, ...]
UNKNOWN_FIELD = "zz_not_a_field"
BAD_NAME = "NOT A NAME"
# A value that matches each pattern the document uses. A new pattern fails
# `test_every_pattern_in_the_document_has_an_example` until it gets one here.
MATCHING = {
    NOT_BLANK: "a",
    NUL_FREE: "a",
    URL_PATTERN: "https://example.com/h",
    SECRET_PATTERN: "s" * 24,
    "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$": "u1",
    "^[A-Za-z_][A-Za-z0-9_]*$": "E",
    "^[0-9a-fA-F]{64}$": "0" * 64,
    "^[A-Za-z0-9._*?-]+$": "job.*",
}
NOT_MATCHING = [" ", "!", "a b", "z" * 64]
JSON_TYPES: list[tuple[str, Any]] = [
    ("string", "text"),
    ("integer", 7),
    ("boolean", True),
    ("array", []),
    ("object", {}),
    ("null", None),
]


@attrs.frozen
class Violation:
    rule: str
    field: str
    body: Any


def json_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "body"


def kinds(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def variants(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas of a schema whose `allOf` picks rules by a tag (`if`/`then`)."""
    plain = {k: v for k, v in schema.items() if k != "allOf"}
    return [
        {
            **plain,
            **part["then"],
            "required": [*plain.get("required", []), *part["then"].get("required", [])],
            "properties": {**plain.get("properties", {}), **part["then"].get("properties", {})},
        }
        for part in schema.get("allOf", [])
    ]


def branch(schema: dict[str, Any]) -> dict[str, Any]:
    found = variants(schema)
    return found[0] if found else schema


def valid(schema: dict[str, Any]) -> Any:
    """The simplest value `schema` accepts, built only from what the schema says."""
    schema = branch(schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = next((k for k in kinds(schema) if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: valid(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [valid(schema.get("items", {}))] * schema.get("minItems", 0)
    if kind == "string":
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        if "pattern" in schema and schema["pattern"] not in (NUL_FREE, NOT_BLANK):
            return MATCHING[schema["pattern"]]
        return "a" * max(schema.get("minLength", 0), 1)
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return schema["minimum"]
        return schema.get("exclusiveMinimum", -1) + 1
    return {"boolean": True, "null": None}[kind]


def put(body: Any, path: Path, value: Any) -> Any:
    """A copy of `body` with `value` at `path` (the containers on the way exist)."""
    if not path:
        return value
    changed = copy.deepcopy(body)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def at(body: Any, path: Path) -> Any:
    for part in path:
        body = body[part]
    return body


def violations(schema: dict[str, Any], body: Any, path: Path = ()) -> Iterator[Violation]:
    """Copies of the valid `body` that each break one rule of `schema` at `path`."""
    where = json_path(path)
    allowed = kinds(schema)
    if allowed and path:  # a body that is no object is refused before its schema is read
        wrong = next(v for k, v in JSON_TYPES if k not in allowed and not _counts_as(k, allowed))
        yield Violation("type", where, put(body, path, wrong))
    if "enum" in schema:
        yield Violation("enum", where, put(body, path, "not one of them"))
    if "allOf" in schema:
        found = variants(schema)
        plain = {k: v for k, v in schema.items() if k != "allOf"}
        yield from _object_violations(plain, put(body, path, valid(found[0])), path)
        for variant in found:
            yield from _object_violations(variant, put(body, path, valid(variant)), path)
        return
    value = at(body, path)
    if isinstance(value, dict):
        yield from _object_violations(schema, body, path)
    elif isinstance(value, list):
        yield from _array_violations(schema, body, path)
    elif isinstance(value, str):
        yield from _string_violations(schema, body, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield from _number_violations(schema, body, path)


def _counts_as(kind: str, allowed: list[str]) -> bool:
    return kind == "integer" and "number" in allowed


def _object_violations(schema: dict[str, Any], body: Any, path: Path) -> Iterator[Violation]:
    value = at(body, path)
    for name in schema.get("required", []):
        without = {k: v for k, v in value.items() if k != name}
        yield Violation("required", json_path((*path, name)), put(body, path, without))
    if schema.get("additionalProperties") is False:
        extra = {**value, UNKNOWN_FIELD: 1}
        unknown = json_path((*path, UNKNOWN_FIELD))
        yield Violation("additionalProperties", unknown, put(body, path, extra))
    extra_schema = schema.get("additionalProperties")
    if "propertyNames" in schema and isinstance(extra_schema, dict):
        misnamed = {**value, BAD_NAME: valid(extra_schema)}
        yield Violation("pattern", json_path((*path, BAD_NAME)), put(body, path, misnamed))
        name = MATCHING[schema["propertyNames"]["pattern"]]
        with_one = put(body, path, {**value, name: valid(extra_schema)})
        yield from violations(extra_schema, with_one, (*path, name))
    for name, item in schema.get("properties", {}).items():
        if "const" in item:
            continue  # the variant's tag: `enum` on the same property covers it
        with_it = put(body, path, {**value, name: valid(item)})
        yield from violations(item, with_it, (*path, name))


def _array_violations(schema: dict[str, Any], body: Any, path: Path) -> Iterator[Violation]:
    items = schema.get("items", {})
    if schema.get("minItems", 0) > 0:
        yield Violation("minItems", json_path(path), put(body, path, []))
    if "maxItems" in schema:
        too_many = [valid(items)] * (schema["maxItems"] + 1)
        yield Violation("maxItems", json_path(path), put(body, path, too_many))
    one = put(body, path, [valid(items)])
    yield from violations(items, one, (*path, 0))


def _string_violations(schema: dict[str, Any], body: Any, path: Path) -> Iterator[Violation]:
    where = json_path(path)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if schema.get("format") == "uuid":
        yield Violation("format", where, put(body, path, "not-a-uuid"))
    if "pattern" in schema and schema["pattern"] != NUL_FREE:
        # (NUL, which no string may hold, is the decoder's rule: tests/unit cover it.)
        pattern = _regex(schema["pattern"])
        wrong = [
            s
            for s in [*NOT_MATCHING, MATCHING[schema["pattern"]] + "\n"]
            if low <= len(s) <= (high or len(s)) and not pattern.search(s)
        ]
        assert wrong, schema["pattern"]
        for text in dict.fromkeys([wrong[0], wrong[-1]]):
            yield Violation("pattern", where, put(body, path, text))
        return  # a length outside the bounds would break the pattern too
    if low > 0:
        yield Violation("minLength", where, put(body, path, "a" * (low - 1)))
    if high is not None:
        yield Violation("maxLength", where, put(body, path, "a" * (high + 1)))


def _number_violations(schema: dict[str, Any], body: Any, path: Path) -> Iterator[Violation]:
    where = json_path(path)
    # Past the one JSON decoder's range a number is refused before any schema sees it.
    if "minimum" in schema and schema["minimum"] - 1 >= MIN_INT:
        yield Violation("minimum", where, put(body, path, schema["minimum"] - 1))
    if "maximum" in schema and schema["maximum"] + 1 <= MAX_INT:
        yield Violation("maximum", where, put(body, path, schema["maximum"] + 1))
    if "exclusiveMinimum" in schema:
        yield Violation("exclusiveMinimum", where, put(body, path, schema["exclusiveMinimum"]))
    if "integer" in kinds(schema):
        yield Violation("type", where, put(body, path, at(body, path) + 0.5))


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in sorted(document["paths"].items()):
        for method, operation in sorted(methods.items()):
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                yield method.upper(), path, content["application/json"]["schema"]


def patterns(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield schema["pattern"]
        for value in schema.values():
            yield from patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from patterns(value)


@pytest.fixture
async def open_client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(rate_limit_per_minute=0, claim_max_wait=0.2)


async def event_count(node: LogNode) -> int:
    count: int = await node.store.pool.fetchval("SELECT count(*) FROM events")
    return count


async def test_every_pattern_in_the_document_has_an_example(open_client: Client) -> None:
    document = await (await open_client.get("/api/v1/openapi.json")).json()

    used = {p for _, _, schema in operations(document) for p in patterns(schema)}

    assert used, "the document shows no pattern at all"
    assert used <= set(MATCHING), used - set(MATCHING)


async def test_a_body_that_breaks_any_documented_rule_is_refused_naming_field_and_rule(
    open_client: Client, admin: Any, node: LogNode
) -> None:
    client = open_client
    hook = await client.post(
        "/api/v1/webhooks", json={"url": "https://example.com/h"}, headers=admin.headers
    )
    assert hook.status == 201, await hook.text()
    ids = {"endpoint_id": (await hook.json())["id"]}
    document = await (await client.get("/api/v1/openapi.json")).json()
    before = await event_count(node)
    checked: dict[str, int] = {}
    rules: set[str] = set()

    for method, template, schema in operations(document):
        url = template
        for name in [p["name"] for p in _parameters(document, template, method)]:
            url = url.replace("{" + name + "}", ids.get(name, str(uuid.uuid4())))
        base = valid(schema)
        for violation in violations(schema, base):
            resp = await client.request(method, url, json=violation.body, headers=admin.headers)
            text = await resp.text()
            assert resp.status == 422, (method, template, violation, text)
            error = (await resp.json())["error"]
            assert error["code"] == "VALIDATION_ERROR"
            assert error["details"]["field"] == violation.field, (method, template, violation)
            assert error["details"]["rule"] == violation.rule, (method, template, violation)
            assert violation.field in error["message"]
            checked[f"{method} {template}"] = checked.get(f"{method} {template}", 0) + 1
            rules.add(violation.rule)

    assert await event_count(node) == before
    assert set(checked) == {f"{m} {t}" for m, t, s in operations(document) if _has_rules(s)}
    assert rules >= {
        "required", "additionalProperties", "type", "enum", "format", "pattern", "minLength",
        "maxLength", "minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems",
    }  # fmt: skip


def _has_rules(schema: dict[str, Any]) -> bool:
    return bool(schema.get("properties") or schema.get("additionalProperties") is False)


def _parameters(document: dict[str, Any], template: str, method: str) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = document["paths"][template][method.lower()].get(
        "parameters", []
    )
    return parameters


@pytest.mark.parametrize("username", ["mallory\n", "mallory\r\n"])
async def test_a_username_ending_in_a_line_break_makes_no_user(
    open_client: Client, admin: Any, node: LogNode, username: str
) -> None:
    before = await event_count(node)

    resp = await open_client.post(
        "/api/v1/users", json={"username": username}, headers=admin.headers
    )

    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["details"] == {
        "field": "username",
        "rule": "pattern",
        "limit": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
    }
    assert await event_count(node) == before


async def test_an_integer_field_refuses_a_fraction_and_takes_an_integer_in_float_form(
    open_client: Client, admin: Any
) -> None:
    async def report(percent: str) -> Any:
        raw = '{"fencing_token": 1, "reports": [{"type": "progress", "percent": ' + percent + "}]}"
        return await open_client.post(
            f"/api/v1/jobs/{uuid.uuid4()}/reports",
            data=raw,
            headers={**admin.headers, "Content-Type": "application/json"},
        )

    fraction = await report("50.5")
    assert fraction.status == 422, await fraction.text()
    details = (await fraction.json())["error"]["details"]
    assert details == {"field": "reports[0].percent", "rule": "type"}
    # 50.0 is the integer 50 to JSON Schema: the body is valid, and the job is looked up.
    whole = await report("50.0")
    assert whole.status == 404, await whole.text()
