"""Parsing the audit filters and `as_of`: positions, RFC 3339 times, type globs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from helix.audit.filters import EventFilter, check_range, parse_types, parse_uuid
from helix.audit.time_travel import MAX_POSITION, AsOf, parse_as_of
from helix.errors import ValidationError
from helix.inputs import parse_time


def test_an_as_of_of_digits_is_a_log_position() -> None:
    assert parse_as_of("0") == AsOf(position=0)
    assert parse_as_of("42") == AsOf(position=42)
    for spaced in (" 42 ", "4 2", "\u0664\u0662"):  # nor spaces, nor other scripts' digits
        with pytest.raises(ValidationError):
            parse_as_of(spaced)


def test_an_as_of_with_an_offset_is_an_instant() -> None:
    assert parse_as_of("2026-01-31T12:00:00Z") == AsOf(time=datetime(2026, 1, 31, 12, tzinfo=UTC))
    found = parse_as_of("2026-01-31T14:00:00.123456+02:00").time
    assert found == datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    assert found is not None and found.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    "raw", ["", "-1", "+3", "1.5", "yesterday", "2026-01-31T12:00:00", "2026-01-31", "12:00Z"]
)
def test_anything_else_as_as_of_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_as_of(raw)
    assert refused.value.details["field"] == "as_of"


def test_a_position_past_the_largest_one_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_as_of(str(MAX_POSITION + 1))


def test_times_need_an_offset_and_accept_a_lowercase_z() -> None:
    assert parse_time("2026-01-31t12:00:00z", "since") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2026-01-31T12:00:00-05:00", "until").tzinfo == timezone(timedelta(hours=-5))
    with pytest.raises(ValidationError) as refused:
        parse_time("2026-01-31T12:00:00", "until")
    assert refused.value.details["field"] == "until"


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T13:59:59.999999+14:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T10:00:00-14:00",
    ],
)
def test_a_time_that_does_not_exist_in_utc_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_time(raw, "since")
    assert refused.value.details["field"] == "since"
    with pytest.raises(ValidationError):
        parse_as_of(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T14:00:00+14:00",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T09:59:59-14:00",
        "9999-12-31T23:59:59+14:00",
    ],
)
def test_the_first_and_last_instants_in_utc_are_accepted(raw: str) -> None:
    at = parse_time(raw, "since")
    assert at.astimezone(UTC) == datetime.fromisoformat(raw.replace("Z", "+00:00"))


def test_a_time_holding_nul_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_time("2026-01-31T12:00:00Z\x00", "until")
    assert "NUL" in refused.value.message


def test_type_globs_may_be_repeated_or_comma_separated_and_are_deduplicated() -> None:
    assert parse_types(["job.*, project.created", "job.*", ",", "auth.login_*"]) == (
        "job.*",
        "project.created",
        "auth.login_*",
    )
    assert parse_types([]) == ()


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    start = datetime(2026, 1, 2, tzinfo=UTC)
    check_range(start, start)
    check_range(None, start)
    with pytest.raises(ValidationError):
        check_range(start, start - timedelta(microseconds=1))


def test_a_project_id_must_be_a_uuid() -> None:
    value = uuid.uuid4()
    assert parse_uuid(str(value), "project_id") == value
    with pytest.raises(ValidationError):
        parse_uuid("nope", "project_id")


def test_a_filter_becomes_the_query_parameters_with_globs_as_like_patterns() -> None:
    selection = EventFilter(after=3, types=("job.*", "a_b?"), actor="user:1", viewer="u")
    patterns, actor, since, until, viewer = selection.residual_args()
    assert patterns == ["job.%", "a\\_b_"]
    assert (actor, since, until, viewer) == ("user:1", None, None, "u")
    assert EventFilter().residual_args() == (None, None, None, None, None)
