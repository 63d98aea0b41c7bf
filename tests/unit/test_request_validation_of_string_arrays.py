"""A long array of plain strings (a worker's output lines) is checked in one pass, with the
same verdicts and the same named field as the general rule gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.api.validation import RequestSchema, object_body
from helix.errors import ValidationError

LINES = object_body(
    {"lines": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 5}}},
    required=["lines"],
)
# The same rule with a keyword the one-pass check does not take, so the general rule decides.
GENERAL = object_body(
    {
        "lines": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": ""},
        }
    },
    required=["lines"],
)


def verdict(schema: RequestSchema, body: dict[str, Any]) -> tuple[str, Any] | None:
    try:
        schema.validate(body)
    except ValidationError as refused:
        return str(refused), dict(refused.details)
    return None


@given(st.lists(st.one_of(st.text(max_size=7), st.integers(), st.none()), max_size=30))
def test_one_pass_and_general_rule_agree_on_every_array(lines: list[Any]) -> None:
    assert verdict(LINES, {"lines": lines}) == verdict(GENERAL, {"lines": lines})


def test_a_wrong_line_among_thousands_is_named_by_its_index() -> None:
    lines = ["ok"] * 5000
    lines[4321] = "too long"
    with pytest.raises(ValidationError) as refused:
        LINES.validate({"lines": lines})
    assert refused.value.details["field"] == "lines[4321]"
