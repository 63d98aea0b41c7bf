"""The rules for client input: the one JSON decoder and the text rule, without a server."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helix.errors import BadRequest, ValidationError
from helix.inputs import MAX_DEPTH, MAX_INT, MIN_INT, check_text, decode_json

# Characters with a UTF-8 form and no NUL: what a client may send in any string.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(MIN_INT, MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)


def within_limits(depth: int) -> st.SearchStrategy[Any]:
    if depth == MAX_DEPTH:
        return SCALARS
    inner = within_limits(depth + 1)
    return SCALARS | st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


@settings(max_examples=300)
@given(st.lists(SCALARS) | st.dictionaries(TEXT, st.lists(SCALARS, max_size=3)))
def test_documents_within_the_rules_decode_as_json_loads_decodes_them(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert decode_json(text) == json.loads(text)
        assert decode_json(text.encode()) == json.loads(text)


@settings(max_examples=50)
@given(within_limits(1))
def test_any_document_nested_up_to_the_limit_is_accepted(value: Any) -> None:
    assert decode_json(json.dumps(value)) == value


@pytest.mark.parametrize(
    "text", [nested_arrays(MAX_DEPTH), '{"a":' * (MAX_DEPTH - 1) + "[]" + "}" * (MAX_DEPTH - 1)]
)
def test_exactly_the_depth_limit_is_accepted(text: str) -> None:
    decode_json(text)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, sys.getrecursionlimit() + 10, 1_000_000])
def test_anything_deeper_is_refused_whatever_the_depth(depth: int) -> None:
    with pytest.raises(ValidationError) as refused:
        decode_json(nested_arrays(depth))

    assert refused.value.details == {"max_depth": MAX_DEPTH}


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = json.dumps({"s": "[" * 10_000 + "{" * 10_000})

    assert decode_json(text) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"a": "x\\u0000"}', "a"),
        ('{"a": ["ok", {"b": "\\ud800"}]}', "a[1].b"),
        ('{"\\udfff": 1}', "\\udfff"),
        ('["\\\\u0000", "\\u0000"]', "[1]"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_naming_where_they_are(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        decode_json(text)

    assert refused.value.details["field"] == field


def test_escaped_backslashes_before_u_are_not_escapes() -> None:
    assert decode_json('["\\\\u0000", "\\\\ud800"]') == ["\\u0000", "\\ud800"]


@pytest.mark.parametrize("raw", [b'"\xed\xa0\x80"', b'"\xff"', b'"\xc3"', '"é"'.encode("utf-16")])
def test_bytes_that_are_not_utf8_are_a_bad_request(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        decode_json(raw)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "{", ""])
def test_what_is_not_json_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest):
        decode_json(text)


@pytest.mark.parametrize(
    "text", ["1e400", "-1e400", str(MAX_INT + 1), str(MIN_INT - 1), "7" * 5000]
)
def test_numbers_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        decode_json(text)


def test_the_integer_limits_themselves_are_accepted() -> None:
    assert decode_json(f"[{MIN_INT}, {MAX_INT}, -0, 0.5e-400]") == [MIN_INT, MAX_INT, 0, 0.0]


@given(TEXT)
def test_text_without_nul_or_lone_surrogates_passes_the_text_rule(value: str) -> None:
    assert check_text(value, "q") == value


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "\ud800", "x\udc80y"])
def test_text_with_nul_or_a_lone_surrogate_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_text(value, "q")

    assert refused.value.details == {"field": "q"}
