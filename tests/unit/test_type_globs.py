"""Event type globs without a database: what they match, what is refused, and how much work a
hostile glob can make."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from helix import globs
from helix.errors import ValidationError
from helix.globs import MAX_GLOBS, MAX_LENGTH, TypeGlobs

# The globs of the stalled-server report, each as long as a glob may be.
STALLING = tuple(("*?" * MAX_LENGTH)[: MAX_LENGTH - 3] + f"A{i:02d}" for i in range(MAX_GLOBS))


def test_globs_match_whole_types_with_star_and_question_mark() -> None:
    wanted = TypeGlobs(("job.*", "project.?reated"))

    assert wanted.matches("job.phase_started")
    assert wanted.matches("job.")
    assert wanted.matches("project.created")
    assert not wanted.matches("myjob.queued")
    assert not wanted.matches("job")
    assert not wanted.matches("project.recreated")
    assert TypeGlobs().matches("anything.at_all")


def test_a_star_spans_dots_and_other_characters_stand_for_themselves() -> None:
    assert TypeGlobs(("*.completed",)).matches("job.phase.completed")
    assert TypeGlobs(("job*",)).matches("job")
    assert TypeGlobs(("a*b*c",)).matches("abc")
    assert not TypeGlobs(("a*b*c",)).matches("acb")
    assert TypeGlobs(("job_?",)).matches("job_x")
    assert not TypeGlobs(("job_?",)).matches("jobxx")
    assert not TypeGlobs(("Job.*",)).matches("job.queued")


def test_the_sql_form_keeps_like_wildcards_literal() -> None:
    assert globs.to_like("job.*") == "job.%"
    assert globs.to_like("job.phase_?") == "job.phase\\__"
    assert globs.to_like("100%\\") == "100\\%\\\\"
    assert globs.like_patterns(()) is None
    assert globs.like_patterns(["a*", "b"]) == ["a%", "b"]


def test_globs_come_repeated_or_comma_separated_and_are_deduplicated() -> None:
    assert globs.split(["job.*, project.created", "job.*", ",", " "], "type") == (
        "job.*",
        "project.created",
    )
    assert globs.check(STALLING, "types") == STALLING


@pytest.mark.parametrize(
    "bad",
    [
        ["job.%"],
        ["a b"],
        ["job.\x00"],
        ["x\ud800"],
        ["é"],
        [""],
        ["*" * (MAX_LENGTH + 1)],
        [f"t{i}" for i in range(MAX_GLOBS + 1)],
    ],
)
def test_a_glob_with_other_characters_or_past_the_bounds_is_refused_naming_the_field(
    bad: list[str],
) -> None:
    with pytest.raises(ValidationError) as refused:
        globs.check(bad, "event_types")

    assert refused.value.details == {"field": "event_types"}


def test_too_many_comma_separated_globs_are_refused_before_the_rest_is_read() -> None:
    def endless() -> Iterator[str]:
        while True:
            yield "a,b,c"

    with pytest.raises(ValidationError, match=f"at most {MAX_GLOBS}"):
        globs.split(endless(), "types")
    with pytest.raises(ValidationError):
        globs.split([3], "types")


@contextmanager
def counting_steps() -> Iterator[list[int]]:
    """Counts the lines of `helix.globs` executed meanwhile: the matcher's work, as a number
    rather than a time."""
    count = [0]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            count[0] += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == globs.__file__ else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield count
    finally:
        sys.settrace(previous)


@pytest.mark.parametrize(
    "glob",
    [
        STALLING[0],
        "*" + "?a" * 98 + "c*",
        "*?" + "a" * 98 + "c*?" + "a" * 95 + "*",
        "*" + "?" * 60 + "*" + "?a" * 60 + "c*",
        "?" * 199 + "b",
        "*a" * 98 + "*b*",
    ],
)
def test_a_hostile_glob_decides_a_long_type_in_at_most_length_times_length_steps(
    glob: str,
) -> None:
    assert len(glob) <= MAX_LENGTH
    for text in ("a" * 1000, "x" * 250 + "A00", "a" * 150):
        wanted = TypeGlobs((glob,))
        with counting_steps() as steps:
            wanted.matches(text)

        # A backtracking regex of these globs takes exponentially many steps.
        assert 0 < steps[0] <= 4 * (len(text) + 1) * (len(glob) + 1), (glob[:20], len(text))


def test_every_glob_of_a_filter_is_tried_and_a_type_is_decided_once() -> None:
    wanted = TypeGlobs(STALLING)
    long_type = "x" * 300

    assert wanted.matches("x" * 250 + "A31")
    assert not wanted.matches(long_type)
    with counting_steps() as again:
        assert not wanted.matches(long_type)
    assert again[0] < 10
