"""An integer a client's JSON library writes as `1.0` is the integer 1, as JSON Schema says:
the body validates, and the handler gets an int, wherever the schema puts it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.api.validation import object_body
from helix.api.workers import REPORT_BATCH
from helix.errors import ValidationError
from helix.inputs import MAX_INT

NESTED = object_body(
    {
        "n": {"type": "integer"},
        "x": {"type": "number"},
        "items": {"type": "array", "items": {"type": "integer"}},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
    }
)


def test_integral_floats_become_ints_where_the_schema_says_integer() -> None:
    body = NESTED.validated(
        {"n": 3.0, "x": 2.0, "items": [1.0, 2], "either": 4.0, "map": {"a": 5.0}}
    )

    assert body == {"n": 3, "x": 2.0, "items": [1, 2], "either": 4, "map": {"a": 5}}
    assert [type(v) for v in (body["n"], body["x"], body["either"], body["map"]["a"])] == [
        int, float, int, int,
    ]  # fmt: skip
    assert all(type(v) is int for v in body["items"])


def test_a_report_batch_with_float_forms_equals_the_plain_one() -> None:
    plain = {"fencing_token": 3, "reports": [{"type": "progress", "percent": 61}]}
    floated = {"fencing_token": 3.0, "reports": [{"type": "progress", "percent": 61.0}]}

    assert REPORT_BATCH.validated(floated) == plain
    assert type(REPORT_BATCH.validated(floated)["reports"][0]["percent"]) is int


@pytest.mark.parametrize("value", [1.5, float(2**64), -0.25])
def test_a_fraction_or_a_float_beyond_int64_is_not_an_integer(value: float) -> None:
    with pytest.raises(ValidationError) as refused:
        NESTED.validated({"n": value})
    assert refused.value.details == {"field": "n", "rule": "type"}


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_any_integer_in_float_form_reads_as_that_integer(n: int) -> None:
    body: dict[str, Any] = NESTED.validated({"n": float(n), "items": [float(n)]})
    assert body == {"n": n, "items": [n]} and type(body["n"]) is int
    assert abs(n) <= MAX_INT
