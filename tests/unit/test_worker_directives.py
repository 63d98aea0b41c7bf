"""`::helix` lines a phase prints, and the output filter's patterns: what becomes a report,
what stays output, which patterns a worker refuses to run."""

from __future__ import annotations

import pytest

from helix.config import SettingError, Settings
from helix.worker.config import WorkerConfig
from helix.worker.directives import (
    Cost,
    File,
    Message,
    OutputFilter,
    Progress,
    UnsafePattern,
    check_pattern,
    parse,
)


@pytest.mark.parametrize(
    ("line", "directive"),
    [
        ("::helix progress 40", Progress(percent=40)),
        ("::helix progress 0", Progress(percent=0)),
        ("::helix progress 100", Progress(percent=100)),
        ("::helix cost tokens=1200 usd=0.03", Cost(tokens=1200, usd=0.03)),
        ("::helix cost usd=2", Cost(tokens=0, usd=2.0)),
        ("::helix cost tokens=7", Cost(tokens=7, usd=0.0)),
        ("::helix file path/to/x", File(path="path/to/x")),
        ("::helix file  spaced name.txt ", File(path="spaced name.txt")),
        ("::helix message The plan is ready", Message(content="The plan is ready")),
    ],
)
def test_a_well_formed_directive_is_read(line: str, directive: object) -> None:
    assert parse(line) == directive


@pytest.mark.parametrize(
    "line",
    [
        "plain output",
        "  ::helix progress 40",
        "::helix",
        "::helix progress",
        "::helix progress 101",
        "::helix progress -1",
        "::helix progress 4.5",
        "::helix cost",
        "::helix cost tokens=-1",
        "::helix cost usd=-0.5",
        "::helix cost usd=1e400",
        "::helix cost usd=nan",
        "::helix cost tokens=1 tokens=2",
        "::helix cost dollars=3",
        "::helix cost tokens=99999999999999999999",
        "::helix file",
        "::helix file   ",
        "::helix message",
        "::helix message " + "x" * 5000,
        "::helix dance",
    ],
)
def test_a_malformed_or_unknown_directive_stays_output(line: str) -> None:
    assert parse(line) is None


@pytest.mark.parametrize("pattern", [r"^\s*$", r"^Thinking\.\.\.", r"[ab]+c", r"(abc)+", "(a|b)x"])
def test_a_pattern_without_nested_or_alternated_repetition_is_accepted(pattern: str) -> None:
    assert check_pattern(pattern).pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a+)+b", "repetition inside a repetition"),
        (r"(x|xy)*z", "alternation inside a repetition"),
        (r"(?=x)y", "lookaround"),
        (r"(?<!x)y", "lookaround"),
        (r"(a)\1", "backreference"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"(", "not a regular expression"),
        ("a" * 501, "longer than"),
    ],
)
def test_a_pattern_that_could_backtrack_for_ever_is_refused(pattern: str, why: str) -> None:
    with pytest.raises(UnsafePattern, match=why):
        check_pattern(pattern)


def test_the_filter_drops_the_lines_a_pattern_matches_anywhere() -> None:
    found = OutputFilter.of([r"^\s*$", "Thinking"])
    assert [x for x in ["a", "", "  ", "still Thinking...", "b"] if found.keeps(x)] == ["a", "b"]


def test_the_patterns_come_from_the_environment_as_a_json_array() -> None:
    env = {"HELIX_OUTPUT_FILTER_PATTERNS": '["^$", "^Thinking"]', "HELIX_MAX_JOB_DURATION": "90"}
    settings = Settings.from_env(env)
    assert settings.output_filter_patterns == ("^$", "^Thinking")
    assert settings.max_job_duration == 90.0
    assert Settings.from_env({}).max_job_duration is None


@pytest.mark.parametrize(
    "env",
    [
        {"HELIX_OUTPUT_FILTER_PATTERNS": "^$"},
        {"HELIX_OUTPUT_FILTER_PATTERNS": "[1]"},
        {"HELIX_OUTPUT_FILTER_PATTERNS": r'["(a+)+"]'},
        {"HELIX_MAX_JOB_DURATION": "-5"},
        {"HELIX_MAX_JOB_DURATION": "soon"},
    ],
)
def test_an_unusable_setting_names_its_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingError, match=next(iter(env))):
        Settings.from_env(env)


def test_a_worker_refuses_an_unsafe_filter_at_configuration() -> None:
    with pytest.raises(UnsafePattern):
        WorkerConfig(server="http://x", key="k", output_filter=["(a*)*"])
