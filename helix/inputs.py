"""What Helix accepts from a client, decided in one place: JSON documents, strings, times.

Every JSON document a client sends (an HTTP body, a WebSocket message, a worker's report) is
decoded by `decode_json`, every query parameter goes through `check_text`, and every time a
client gives through `parse_time`. What they refuse would otherwise fail deep inside (a
RecursionError, an encoder or PostgreSQL error, a datetime overflow) as a 500:

- JSON is UTF-8 text with arrays and objects nested at most `MAX_DEPTH` levels deep (the
  document's own object or array is the first level), finite numbers and 64-bit integers;
- a string (and an object key) holds no NUL (PostgreSQL text and jsonb cannot store it) and no
  lone surrogate (it has no UTF-8 form, so it can be neither stored nor sent back);
- a time is RFC 3339 with an offset, and must exist in UTC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from helix.errors import BadRequest, ValidationError

MAX_DEPTH = 64
# Integers beyond these cannot be SQL bigint parameters; no field of Helix needs more.
MIN_INT, MAX_INT = -(2**63), 2**63 - 1
_MAX_INT_DIGITS = len(str(MAX_INT))
_SURROGATE = re.compile("[\ud800-\udfff]")
# Where a decoded string could hold NUL or a lone surrogate: only an escape can put one there
# (strict decoding refuses raw control characters and undecodable bytes), so a document without
# these escapes needs no walk for them.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class TooDeep(ValidationError):
    def __init__(self, what: str) -> None:
        super().__init__(
            f"the {what} is nested more than {MAX_DEPTH} levels deep", max_depth=MAX_DEPTH
        )


def _integer(text: str) -> int:
    # Checked on the digits first: int() of thousands of digits is slow, and refused anyway.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS or not MIN_INT <= (value := int(text)) <= MAX_INT:
        raise ValidationError(
            f"the integer {text[:24]}{'…' if len(text) > 24 else ''} is out of range "
            f"({MIN_INT} to {MAX_INT})",
            minimum=MIN_INT,
            maximum=MAX_INT,
        )
    return value


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValidationError(f"the number {text[:24]} is out of range", number=text[:24])
    return value


def _no_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_finite, parse_constant=_no_constant)


def decode_json(raw: bytes | str, what: str = "body") -> Any:
    """The JSON value of a client's document; 400 if it is not JSON in UTF-8, 422 if it breaks
    a rule above (with the JSON path of the offending string as `field`)."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"the {what} is not valid UTF-8 (byte {exc.start})", position=exc.start
            ) from None
    else:
        text = raw
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the {what} is not valid JSON: {exc}") from None
    except RecursionError:
        # The C decoder recurses per level and stops cleanly at the interpreter's limit, far
        # beyond MAX_DEPTH; anything shallower is checked below without recursion.
        raise TooDeep(what) from None
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    if deep or _RISKY_ESCAPE.search(text):
        _check_tree(value, what)
    return value


def check_text(value: str, field: str) -> str:
    """`value` unless it holds NUL or a lone surrogate (422 naming `field`)."""
    # The field's name may be a key holding the very surrogate: named escaped, so the error
    # itself can be encoded.
    field = field.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character", field=field)
    if _SURROGATE.search(value):
        raise ValidationError(
            f"{field} contains a lone surrogate (not a Unicode character)", field=field
        )
    return value


def _check_tree(value: Any, what: str) -> None:
    for node, depth, path in _walk(value):
        if depth > MAX_DEPTH and isinstance(node, dict | list):
            raise TooDeep(what)
        if isinstance(node, str):
            check_text(node, path or what)


def _walk(value: Any) -> Iterator[tuple[Any, int, str]]:
    """Every value and object key of a document with its depth and JSON path, depth first,
    with a stack of its own rather than recursion."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        yield node, depth, path
        if isinstance(node, dict):
            for key, item in reversed(node.items()):
                where = f"{path}.{key}" if path else str(key)
                yield key, depth, where
                stack.append((item, depth + 1, where))
        elif isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                stack.append((node[index], depth + 1, f"{path}[{index}]"))


def parse_time(raw: str, field: str) -> datetime:
    """An RFC 3339 date-time with an offset (`Z` or `+hh:mm`) that exists in UTC; else 422.

    Python's datetimes span years 1 to 9999, well inside PostgreSQL's timestamptz, so a time
    that converts to UTC can be stored and compared; one that does not (year 1 at +14:00,
    year 9999 at -14:00) would overflow when it is sent to the database.
    """
    text = check_text(raw, field).strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        at: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ValidationError(
            f"'{field}' must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T12:00:00Z",
            field=field,
        )
    try:
        at.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"'{field}' is outside the times Helix can store (years 1 to 9999 in UTC)",
            field=field,
        ) from None
    return at
