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
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from helix.errors import ValidationError


def _integer(_: Any, value: Any) -> bool:
    # JSON Schema counts 1.0 as an integer; the handlers and the database want an int, and the
    # one JSON decoder (helix.inputs) keeps "1.0" a float, so only an int is an integer here.
    return isinstance(value, int) and not isinstance(value, bool)


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


class RequestSchema:
    """One request body's JSON schema and the validator compiled from it, and the other names
    (`aliases`: other name → property) the body may give a property by."""

    def __init__(self, document: dict[str, Any], aliases: Mapping[str, str] | None = None) -> None:
        self.document: dict[str, Any] = copy.deepcopy(document)
        self.aliases = dict(aliases or {})
        _Validator.check_schema(self.document)
        self._validator = _Validator(self.document, format_checker=_FORMATS)

    def validate(self, value: Any) -> None:
        """Raise ValidationError (422) naming the field and the rule unless `value` matches."""
        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            raise refusal(error)

    def validated(self, value: dict[str, Any]) -> dict[str, Any]:
        """The body, each alias renamed to the property it stands for, once it matches."""
        for alias, name in self.aliases.items():
            if alias in value and name in value:
                raise ValidationError(
                    f"give {name} or its alias {alias}, not both", field=alias, alias_of=name
                )
        renamed = {self.aliases.get(k, k): v for k, v in value.items()}
        self.validate(renamed)
        return renamed


def object_body(
    properties: dict[str, Any],
    *,
    required: Iterable[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> RequestSchema:
    """A body that is a JSON object of these properties and no others. A body may give a
    property by one of its `aliases` (other name -> property) instead, never by both names:
    the alias is renamed before the schema is checked, so its rules are the property's."""
    document: dict[str, Any] = {"type": "object"}
    if required:
        document["required"] = list(required)
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
