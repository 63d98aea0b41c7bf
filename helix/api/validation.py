"""Request bodies checked by a JSON Schema validator against the schema the OpenAPI document shows.

A `RequestSchema` holds one body's schema (Draft 2020-12, the dialect of OpenAPI 3.1) and the
validator compiled from it when the route module is imported. `helix.api.openapi` publishes
`RequestSchema.document` and the handlers validate with the same object, so the documented
rules and the enforced ones are one thing. A refusal names the offending field by its JSON path
(`phases[0].name`, `body` for the whole body) and the rule it broke.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from helix.errors import ValidationError
from helix.inputs import MAX_INT, MIN_INT


def _integer(_: Any, value: Any) -> bool:
    # JSON Schema counts 1.0 as an integer, as a client's JSON library may write one; the
    # handlers get an int all the same (`_whole`).
    # An int beyond int64 is refused by the decoder already; a float must stay within it too.
    if isinstance(value, float):
        return value.is_integer() and MIN_INT <= value <= MAX_INT
    return isinstance(value, int) and not isinstance(value, bool)


def _has_whole_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_has_whole_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_whole_float(v) for v in value)
    return False


def _whole(value: Any, schema: Any, validator: Any) -> Any:
    """`value` (valid under `schema`) with each float the schema calls an integer an int."""
    if not isinstance(schema, dict):
        return value
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if isinstance(value, float) and "integer" in kinds and "number" not in kinds:
        return int(value)
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        value = {k: _whole(v, properties.get(k, extra), validator) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_whole(v, schema.get("items"), validator) for v in value]
    for sub in schema.get("allOf", ()):
        value = _whole(value, sub, validator)
    if "if" in schema and validator.evolve(schema=schema["if"]).is_valid(value):
        value = _whole(value, schema.get("then"), validator)
    for sub in (*schema.get("anyOf", ()), *schema.get("oneOf", ())):
        if validator.evolve(schema=sub).is_valid(value):
            return _whole(value, sub, validator)
    return value


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    # In the ECMA-262 dialect JSON Schema uses, a final `$` matches only at the end; Python's
    # also matches before a trailing newline, which would let "name\n" through.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[SchemaError]:
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield SchemaError(f"does not match {pattern!r}")


# A text that must say something: a character that is neither white space (as Python's
# str.strip(), which the deciders check with, reads it) nor NUL (which no string may hold).
_SPACE = (
    "\\t\\n\\x0b\\x0c\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_BLANK = f"^[^\\x00]*[^\\x00{_SPACE}][^\\x00]*$"

_ITEMS = Draft202012Validator.VALIDATORS["items"]
_PLAIN_STRING_KEYS = frozenset({"type", "minLength", "maxLength"})


def _items(
    validator: Any, items: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[SchemaError]:
    # An array of plain bounded strings (a worker's output lines: many thousands a request) is
    # checked in one pass; the general rule, which builds a validator for every element, runs
    # only when that pass finds an element wrong, to name it.
    if (
        isinstance(instance, list)
        and isinstance(items, dict)
        and items.get("type") == "string"
        and items.keys() <= _PLAIN_STRING_KEYS
        and "prefixItems" not in schema
        and "unevaluatedItems" not in schema
    ):
        low, high = items.get("minLength", 0), items.get("maxLength")
        if all(
            isinstance(x, str) and low <= len(x) and (high is None or len(x) <= high)
            for x in instance
        ):
            return
    yield from _ITEMS(validator, items, instance, schema)


_Validator = validators.extend(  # type: ignore[no-untyped-call]  # untyped in the stubs
    Draft202012Validator,
    validators={"pattern": _pattern, "items": _items},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer),
)
# Without a format checker, `format` only annotates; with it, `"format": "uuid"` is enforced.
_FORMATS = Draft202012Validator.FORMAT_CHECKER
# Bounds whose value a client can act on, reported in `details.limit`.
_LIMITS = frozenset(
    {
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
    }
)


@attrs.frozen
class Setting:
    """A value of a schema that is a setting of the serving process (`{"minLength":
    Setting("password_min_length")}`), or that `read` derives from the settings: the document
    shows, and the validator enforces, its value (`settled`)."""

    name: str
    read: Callable[[Any], Any] | None = attrs.field(default=None, eq=False)


def settled(schema: Any, settings: object) -> Any:
    """`schema` with each `Setting` replaced by its value in `settings`."""
    if isinstance(schema, Setting):
        return schema.read(settings) if schema.read else getattr(settings, schema.name)
    if isinstance(schema, dict):
        return {k: settled(v, settings) for k, v in schema.items()}
    if isinstance(schema, list):
        return [settled(v, settings) for v in schema]
    return schema


def _has_setting(schema: Any) -> bool:
    if isinstance(schema, Setting):
        return True
    if isinstance(schema, dict):
        return any(_has_setting(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_setting(v) for v in schema)
    return False


class RequestSchema:
    """One request body's JSON schema and the validator compiled from it, and the other names
    (`aliases`: other name → property) the body may give a property by. A schema holding a
    `Setting` is compiled once per settings it is used with."""

    def __init__(self, document: dict[str, Any], aliases: Mapping[str, str] | None = None) -> None:
        self.template: dict[str, Any] = copy.deepcopy(document)
        self.aliases = dict(aliases or {})
        self._fixed = not _has_setting(self.template)
        self._compiled: dict[object, Any] = {}
        if self._fixed:
            self._validator(None)

    def document(self, settings: object) -> dict[str, Any]:
        """The schema as the serving process with `settings` enforces it."""
        return self.template if self._fixed else settled(self.template, settings)

    def _validator(self, settings: object) -> Any:
        key = None if self._fixed else settings
        found = self._compiled.get(key)
        if found is None:
            schema = self.document(settings)
            _Validator.check_schema(schema)
            found = self._compiled[key] = _Validator(schema, format_checker=_FORMATS)
        return found

    def validate(self, value: Any, settings: object = None) -> None:
        """Raise ValidationError (422) naming the field and the rule unless `value` matches."""
        error = best_match(self._validator(settings).iter_errors(value))
        if error is not None:
            raise refusal(error)

    def validated(self, value: dict[str, Any], settings: object = None) -> dict[str, Any]:
        """The body, each alias renamed to the property it stands for, once it matches."""
        for alias, name in self.aliases.items():
            if alias in value and name in value:
                raise ValidationError(
                    f"give {name} or its alias {alias}, not both", field=alias, alias_of=name
                )
        renamed = {self.aliases.get(k, k): v for k, v in value.items()}
        self.validate(renamed, settings)
        if _has_whole_float(renamed):
            validator = self._validator(settings)
            whole: dict[str, Any] = _whole(renamed, validator.schema, validator)
            return whole
        return renamed


def object_body(
    properties: dict[str, Any],
    *,
    required: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
    exclusive: Iterable[str] = (),
    keywords: Mapping[str, Any] | None = None,
) -> RequestSchema:
    """A body that is a JSON object of these properties and no others, giving at most one of
    the `exclusive` ones. A body may give a property by one of its `aliases` (other name ->
    property) instead, never by both names: the alias is renamed before the schema is checked,
    so its rules are the property's. Other JSON Schema `keywords` apply to the whole body."""
    document: dict[str, Any] = {"type": "object"}
    if required:
        document["required"] = list(required)
    if exclusive:
        document["not"] = {"required": list(exclusive)}
    document.update(keywords or {})
    document.update(additionalProperties=False, properties=properties)
    return RequestSchema(document, aliases)


def json_path(parts: Iterable[str | int]) -> str:
    """`phases[0].name` for the path ("phases", 0, "name"); `body` for the whole body."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text or "body"


def _join(parent: str, name: str) -> str:
    return name if parent == "body" else f"{parent}.{name}"


def refusal(error: SchemaError) -> ValidationError:
    """The API's 422 for one schema violation."""
    rule = str(error.validator)
    # Plain JSON values once an error exists; the stubs also allow an unset marker.
    limit: Any = error.validator_value
    instance: Any = error.instance
    schema: Any = error.schema
    where = json_path(error.absolute_path)
    details: dict[str, Any] = {"rule": rule}
    if rule in _LIMITS:
        details["limit"] = limit
    if "propertyNames" in error.absolute_schema_path:
        # The instance is the offending key itself, checked under its object's path.
        field = _join(where, str(instance))
        return ValidationError(
            f"{field}: {str(instance)!r} is not an allowed name (pattern {limit})",
            field=field,
            **details,
        )
    match rule:
        case "required":
            missing = [name for name in limit if name not in instance]
            field = _join(where, missing[0])
            message = f"{field} is required"
        case "additionalProperties":
            known = sorted(schema.get("properties", {}))
            extra = sorted(name for name in instance if name not in known)
            field = _join(where, extra[0])
            message = f"unknown field {field} (known: {', '.join(known)})"
        case "type":
            field = where
            kinds = [limit] if isinstance(limit, str) else list(limit)
            message = f"{field} must be of type {' or '.join(kinds)}"
        case "enum":
            field = where
            details["allowed_values"] = list(limit)
            message = f"{field} must be one of: {', '.join(str(v) for v in limit)}"
        case "const":
            field = where
            message = f"{field} must be {limit!r}"
        case "not" if isinstance(limit, dict) and set(limit) == {"required"}:
            # `{"not": {"required": [a, b]}}`: one or the other, never both.
            field = _join(where, limit["required"][-1])
            message = f"give either {' or '.join(limit['required'])}, not both"
        case "anyOf" | "oneOf" | "pattern" if "description" in schema:
            # A choice of shapes says what it takes in its description.
            field = where
            message = f"{field} must be {schema['description']}"
        case _:
            field = where
            message = f"{field} {_broken_bound(rule, limit)}"
    return ValidationError(message, field=field, **details)


def _broken_bound(rule: str, limit: Any) -> str:
    match rule:
        case "minLength":
            return "must not be empty" if limit == 1 else f"needs at least {limit} characters"
        case "maxLength":
            return f"must be at most {limit} characters"
        case "pattern" if limit == NOT_BLANK:
            return "must not be empty"
        case "pattern":
            return f"must match the pattern {limit}"
        case "format":
            return "must be a UUID" if limit == "uuid" else f"must be in the format {limit}"
        case "minimum":
            return f"must be at least {limit}"
        case "maximum":
            return f"must be at most {limit}"
        case "exclusiveMinimum":
            return f"must be greater than {limit}"
        case "exclusiveMaximum":
            return f"must be less than {limit}"
        case "minItems":
            return f"needs at least {limit} items"
        case "maxItems":
            return f"has more than {limit} items"
        case _:
            return f"breaks the rule {rule!r} of its schema"
