"""A project's agent fields, without a database: phase prompts and its jobs' duration limit."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from helix.domain.project import (
    CreateProject,
    PhaseSpec,
    ProjectState,
    ProjectUpdated,
    UpdateProject,
    decide,
    fold,
    initial_state,
)
from helix.domain.project.decider import MAX_DURATION_S, MAX_PROMPT_CHARS
from helix.errors import ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROJECT_ID = UUID("00000000-0000-4000-8000-0000000000d1")


def created(**changes: object) -> ProjectState:
    fields: dict[str, object] = {"project_id": PROJECT_ID, "name": "p", "owner": "alice", "at": T0}
    fields.update(changes)
    command = CreateProject(**fields)  # type: ignore[arg-type]
    return fold(decide(initial_state(), command))


def test_a_phase_keeps_its_prompt_in_the_plan() -> None:
    state = created(phases=(PhaseSpec(name="plan", prompt="Write PLAN.md"),))
    assert state.phases[0].prompt == "Write PLAN.md"


@pytest.mark.parametrize("prompt", ["", "  ", "x" * (MAX_PROMPT_CHARS + 1), "a\x00b"])
def test_an_empty_overlong_or_nul_prompt_is_refused(prompt: str) -> None:
    with pytest.raises(ValidationError, match="prompt"):
        created(phases=(PhaseSpec(name="plan", prompt=prompt),))


def test_a_projects_duration_limit_is_set_at_creation_changed_and_cleared() -> None:
    state = created(max_job_duration_s=60.0)
    assert state.max_job_duration_s == 60.0

    changed = decide(state, UpdateProject(max_job_duration_s=120.0, at=T0))
    assert changed == [ProjectUpdated(project_id=PROJECT_ID, max_job_duration_s=120.0, at=T0)]
    state = fold(changed, state)
    assert state.max_job_duration_s == 120.0
    assert decide(state, UpdateProject(max_job_duration_s=120.0, at=T0)) == []

    state = fold(decide(state, UpdateProject(max_job_duration_s=0, at=T0)), state)
    assert state.max_job_duration_s is None
    assert decide(state, UpdateProject(max_job_duration_s=0, at=T0)) == []


@pytest.mark.parametrize("limit", [-1.0, float("nan"), float("inf"), MAX_DURATION_S + 1])
def test_an_impossible_duration_limit_is_refused(limit: float) -> None:
    with pytest.raises(ValidationError, match="max_job_duration"):
        created(max_job_duration_s=limit)
    with pytest.raises(ValidationError, match="max_job_duration"):
        decide(created(), UpdateProject(max_job_duration_s=limit, at=T0))
