"""The project decider, without a database: each command's effect and each refusal."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest

from helix.domain.project import (
    EVENTS,
    ArchiveProject,
    CancelRun,
    Command,
    CreateProject,
    Event,
    FinishRun,
    MarkReady,
    MessageRole,
    PauseProject,
    PhaseSpec,
    PlanPhases,
    PostMessage,
    ProjectArchived,
    ProjectCreated,
    ProjectMessagePosted,
    ProjectPhasesPlanned,
    ProjectState,
    ProjectStatus,
    ProjectStatusChanged,
    ProjectUnarchived,
    ProjectUpdated,
    ResumeProject,
    StartRun,
    UnarchiveProject,
    UpdateProject,
    decide,
    fold,
    initial_state,
)
from helix.errors import InvalidTransition, ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROJECT_ID = UUID("00000000-0000-4000-8000-000000000001")
JOB_1 = UUID("00000000-0000-4000-8000-0000000000a1")
JOB_2 = UUID("00000000-0000-4000-8000-0000000000a2")
MESSAGE_ID = UUID("00000000-0000-4000-8000-0000000000f1")
PLAN = (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make", "all")))


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def create(**changes: typing.Any) -> CreateProject:
    fields: dict[str, typing.Any] = {
        "project_id": PROJECT_ID,
        "name": "Login page",
        "owner": "alice",
        "at": at(),
    }
    fields.update(changes)
    return CreateProject(**fields)


def given(*commands: Command, state: ProjectState | None = None) -> ProjectState:
    state = initial_state() if state is None else state
    for command in commands:
        state = fold(decide(state, command), state)
    return state


def draft() -> ProjectState:
    return given(create())


def ready() -> ProjectState:
    return given(create(phases=PLAN), MarkReady(at=at(1)))


def running(job_id: UUID = JOB_1) -> ProjectState:
    return given(StartRun(job_id=job_id, at=at(2)), state=ready())


def paused() -> ProjectState:
    return given(PauseProject(at=at(3)), state=running())


def finished(succeeded: bool) -> ProjectState:
    return given(FinishRun(job_id=JOB_1, succeeded=succeeded, at=at(4)), state=running())


def refused(state: ProjectState, command: Command) -> InvalidTransition:
    with pytest.raises(InvalidTransition) as info:
        decide(state, command)
    expected = state.status.value if state.status is not None else None
    assert info.value.details["current_state"] == expected
    return info.value


def status_change(events: Sequence[Event]) -> ProjectStatusChanged:
    [event] = [e for e in events if isinstance(e, ProjectStatusChanged)]
    return event


# --- creating -----------------------------------------------------------------------------------


def test_creating_a_project_records_it_as_a_draft() -> None:
    events = decide(initial_state(), create(description="d", project_type="feature"))

    assert events == [
        ProjectCreated(
            project_id=PROJECT_ID,
            name="Login page",
            description="d",
            project_type="feature",
            owner="alice",
            at=T0,
        )
    ]
    state = fold(events)
    assert state.exists
    assert state.status is ProjectStatus.DRAFT
    assert state.project_type == "feature"
    assert state.created_at == state.updated_at == T0
    assert not state.archived


def test_a_new_project_is_of_the_general_type_by_default() -> None:
    assert draft().project_type == "general"


def test_a_project_that_does_not_exist_has_no_status() -> None:
    assert initial_state().status is None
    assert not initial_state().exists


def test_creating_a_project_with_phases_also_plans_them() -> None:
    events = decide(initial_state(), create(phases=PLAN))

    assert [type(e) for e in events] == [ProjectCreated, ProjectPhasesPlanned]
    assert [p.name for p in fold(events).phases] == ["plan", "build"]


def test_a_phase_with_no_capabilities_needs_the_shell_or_the_capability_named_after_it() -> None:
    state = given(create(phases=PLAN))

    # `plan` has no command: it waits for a worker offering `plan` (an agent), never a shell.
    assert state.phases[0].capabilities == ("plan",)
    assert state.phases[1].capabilities == ("shell",)


def test_a_phase_that_names_capabilities_keeps_them_instead_of_the_shell() -> None:
    phase = PhaseSpec(name="build", command=("cargo", "build"), capabilities=("rust", "rust"))

    state = given(create(phases=(phase,)))

    assert state.phases[0].capabilities == ("rust",)


def test_creating_a_project_that_exists_is_refused() -> None:
    error = refused(draft(), create())

    assert error.details["reason"] == "already_exists"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_project_name_must_have_one_to_two_hundred_characters(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        decide(initial_state(), create(name=name))
    assert info.value.details["field"] == "name"


def test_a_name_of_two_hundred_characters_is_accepted() -> None:
    assert given(create(name="x" * 200)).name == "x" * 200


@pytest.mark.parametrize(
    "phases",
    [
        (PhaseSpec(name="a"), PhaseSpec(name="a")),
        (PhaseSpec(name=""),),
        (PhaseSpec(name="a", timeout_s=0),),
        (PhaseSpec(name="a", timeout_s=-5),),
        (PhaseSpec(name="a", timeout_s=float("nan")),),
        (PhaseSpec(name="a", timeout_s=float("inf")),),
        (PhaseSpec(name="a", command=()),),
        (PhaseSpec(name="a", env={"NOT VALID": "x"}),),
        (PhaseSpec(name="a", env={"TOKEN\n": "x"}),),
        (PhaseSpec(name="a", command=("x",) * 1_001),),
        (PhaseSpec(name="a", capabilities=tuple(f"c{i}" for i in range(51))),),
    ],
    ids=[
        "duplicate-names",
        "empty-name",
        "zero-timeout",
        "negative-timeout",
        "nan-timeout",
        "infinite-timeout",
        "empty-command",
        "bad-env-name",
        "env-name-ending-in-a-newline",
        "a-command-of-1001-arguments",
        "51-capabilities",
    ],
)
def test_an_invalid_phase_plan_is_refused(phases: tuple[PhaseSpec, ...]) -> None:
    with pytest.raises(ValidationError):
        decide(initial_state(), create(phases=phases))
    with pytest.raises(ValidationError):
        decide(draft(), PlanPhases(phases=phases, at=at(1)))


def test_a_phase_at_the_limits_of_arguments_and_capabilities_is_accepted() -> None:
    phase = PhaseSpec(
        name="a", command=("x",) * 1_000, capabilities=tuple(f"c{i}" for i in range(50))
    )

    decide(initial_state(), create(phases=(phase,)))


def test_a_command_without_a_timezone_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        decide(initial_state(), create(at=datetime(2024, 5, 1, 12, 0)))
    assert info.value.details["field"] == "at"


def test_times_in_other_zones_are_recorded_in_utc() -> None:
    plus_two = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    [event] = decide(initial_state(), create(at=plus_two))

    assert isinstance(event, ProjectCreated)
    assert event.at == T0
    assert event.at.tzinfo is UTC


EVERY_LATER_COMMAND: list[Command] = [
    UpdateProject(name="n", at=at(9)),
    PlanPhases(phases=PLAN, at=at(9)),
    PostMessage(message_id=MESSAGE_ID, role=MessageRole.USER, author="a", content="c", at=at(9)),
    MarkReady(at=at(9)),
    StartRun(job_id=JOB_2, at=at(9)),
    PauseProject(at=at(9)),
    ResumeProject(at=at(9)),
    FinishRun(job_id=JOB_2, succeeded=True, at=at(9)),
    CancelRun(job_id=JOB_2, at=at(9)),
    UnarchiveProject(at=at(9)),
    ArchiveProject(at=at(9)),
]


@pytest.mark.parametrize("command", EVERY_LATER_COMMAND, ids=lambda c: type(c).__name__)
def test_commands_on_a_project_that_does_not_exist_are_refused(command: Command) -> None:
    error = refused(initial_state(), command)

    assert error.details["current_state"] is None
    assert error.details["reason"] == "not_found"


# --- updating and planning ----------------------------------------------------------------------


def test_an_update_records_only_the_fields_that_changed() -> None:
    events = decide(draft(), UpdateProject(name="Login page", description="new", at=at(1)))

    assert events == [ProjectUpdated(project_id=PROJECT_ID, description="new", at=at(1))]
    state = fold(events, draft())
    assert state.description == "new"
    assert state.name == "Login page"
    assert state.updated_at == at(1)


def test_an_update_that_changes_nothing_records_nothing() -> None:
    assert decide(draft(), UpdateProject(name="Login page", at=at(1))) == []


def test_an_update_with_an_invalid_name_is_refused() -> None:
    with pytest.raises(ValidationError):
        decide(draft(), UpdateProject(name="", at=at(1)))


def test_planning_phases_replaces_the_plan() -> None:
    state = given(PlanPhases(phases=(PhaseSpec(name="only"),), at=at(5)), state=ready())

    assert [p.name for p in state.phases] == ["only"]
    assert state.status is ProjectStatus.READY


def test_planning_the_same_plan_again_records_nothing() -> None:
    assert decide(ready(), PlanPhases(phases=PLAN, at=at(5))) == []


def test_planning_an_empty_plan_is_refused() -> None:
    with pytest.raises(ValidationError):
        decide(draft(), PlanPhases(phases=(), at=at(1)))


@pytest.mark.parametrize("state", [running(), paused()], ids=["running", "paused"])
def test_the_plan_cannot_change_during_a_run(state: ProjectState) -> None:
    error = refused(state, PlanPhases(phases=(PhaseSpec(name="x"),), at=at(9)))

    assert error.details["reason"] == "run_in_progress"


# --- discussing ---------------------------------------------------------------------------------


def post(content: str = "Can we add 2FA?", role: MessageRole = MessageRole.USER) -> PostMessage:
    return PostMessage(message_id=MESSAGE_ID, role=role, author="alice", content=content, at=at(1))


def test_the_first_message_starts_the_discussion() -> None:
    events = decide(draft(), post())

    assert isinstance(events[0], ProjectMessagePosted)
    change = status_change(events)
    assert (change.from_status, change.to_status) == (ProjectStatus.DRAFT, ProjectStatus.DISCUSSING)
    state = fold(events, draft())
    assert state.status is ProjectStatus.DISCUSSING
    [message] = state.messages
    assert (message.role, message.author, message.content) == (
        MessageRole.USER,
        "alice",
        "Can we add 2FA?",
    )


@pytest.mark.parametrize("state", [ready(), running(), finished(True)])
def test_a_message_later_on_does_not_change_the_status(state: ProjectState) -> None:
    events = decide(state, post(role=MessageRole.AGENT))

    assert [type(e) for e in events] == [ProjectMessagePosted]
    assert fold(events, state).status is state.status


def test_a_message_with_an_unknown_role_is_refused() -> None:
    command = PostMessage(
        message_id=MESSAGE_ID,
        role=typing.cast(MessageRole, "robot"),
        author="a",
        content="hi",
        at=at(1),
    )
    with pytest.raises(ValidationError) as info:
        decide(draft(), command)
    assert info.value.details["field"] == "role"


@pytest.mark.parametrize("content", ["", "  \n ", "x" * 100_001], ids=["empty", "blank", "long"])
def test_message_content_must_be_present_and_at_most_100k_characters(content: str) -> None:
    with pytest.raises(ValidationError) as info:
        decide(draft(), post(content=content))
    assert info.value.details["field"] == "content"


def test_a_message_of_100k_characters_is_accepted() -> None:
    assert given(post(content="x" * 100_000), state=draft()).messages[0].content == "x" * 100_000


# --- ready and running --------------------------------------------------------------------------


def test_a_project_without_phases_cannot_be_marked_ready() -> None:
    error = refused(draft(), MarkReady(at=at(1)))

    assert error.details["reason"] == "no_phases"


@pytest.mark.parametrize("discussed", [False, True])
def test_a_draft_or_discussing_project_with_phases_can_be_marked_ready(discussed: bool) -> None:
    state = given(create(phases=PLAN))
    if discussed:
        state = given(post(), state=state)

    events = decide(state, MarkReady(at=at(2)))

    assert status_change(events).to_status is ProjectStatus.READY
    assert fold(events, state).status is ProjectStatus.READY


def test_marking_a_ready_project_ready_again_records_nothing() -> None:
    assert decide(ready(), MarkReady(at=at(2))) == []


@pytest.mark.parametrize("state", [running(), paused(), finished(True), finished(False)])
def test_only_a_draft_or_discussing_project_can_be_marked_ready(state: ProjectState) -> None:
    refused(state, MarkReady(at=at(9)))


def test_starting_a_run_moves_a_ready_project_to_running_with_its_job() -> None:
    events = decide(ready(), StartRun(job_id=JOB_1, at=at(2)))

    change = status_change(events)
    assert (change.from_status, change.to_status, change.job_id) == (
        ProjectStatus.READY,
        ProjectStatus.RUNNING,
        JOB_1,
    )
    state = fold(events, ready())
    assert state.status is ProjectStatus.RUNNING
    assert state.latest_job_id == JOB_1


@pytest.mark.parametrize("succeeded", [True, False])
def test_a_finished_project_can_run_again(succeeded: bool) -> None:
    state = given(StartRun(job_id=JOB_2, at=at(9)), state=finished(succeeded))

    assert state.status is ProjectStatus.RUNNING
    assert state.latest_job_id == JOB_2


@pytest.mark.parametrize(
    "state", [draft(), given(post(), state=draft())], ids=["draft", "discussing"]
)
def test_a_project_that_is_not_ready_cannot_start_a_run(state: ProjectState) -> None:
    error = refused(state, StartRun(job_id=JOB_1, at=at(9)))

    assert error.details["reason"] == "invalid_status"


@pytest.mark.parametrize("state", [running(), paused()], ids=["running", "paused"])
def test_a_project_runs_one_job_at_a_time(state: ProjectState) -> None:
    refused(state, StartRun(job_id=JOB_2, at=at(9)))


def test_starting_the_same_run_twice_records_it_once() -> None:
    assert decide(running(), StartRun(job_id=JOB_1, at=at(9))) == []


# --- pausing and resuming -----------------------------------------------------------------------


def test_a_running_project_can_be_paused_and_resumed() -> None:
    paused_state = given(PauseProject(reason="lunch", at=at(3)), state=running())
    assert paused_state.status is ProjectStatus.PAUSED

    events = decide(paused_state, ResumeProject(at=at(4)))

    change = status_change(events)
    assert (change.from_status, change.to_status) == (ProjectStatus.PAUSED, ProjectStatus.RUNNING)
    assert fold(events, paused_state).status is ProjectStatus.RUNNING


def test_pausing_a_paused_project_or_resuming_a_running_one_records_nothing() -> None:
    assert decide(paused(), PauseProject(at=at(9))) == []
    assert decide(running(), ResumeProject(at=at(9))) == []


@pytest.mark.parametrize("state", [draft(), ready(), finished(True)])
def test_only_a_running_project_can_be_paused(state: ProjectState) -> None:
    refused(state, PauseProject(at=at(9)))


@pytest.mark.parametrize("state", [draft(), ready(), finished(False)])
def test_only_a_paused_project_can_be_resumed(state: ProjectState) -> None:
    refused(state, ResumeProject(at=at(9)))


# --- finishing and cancelling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("succeeded", "status"), [(True, ProjectStatus.COMPLETED), (False, ProjectStatus.FAILED)]
)
def test_finishing_a_run_follows_the_job(succeeded: bool, status: ProjectStatus) -> None:
    for before in (running(), paused()):
        events = decide(before, FinishRun(job_id=JOB_1, succeeded=succeeded, at=at(5)))

        assert status_change(events).to_status is status
        assert fold(events, before).status is status


def test_finishing_a_run_of_another_job_is_refused() -> None:
    error = refused(running(), FinishRun(job_id=JOB_2, succeeded=True, at=at(5)))

    assert error.details["reason"] == "not_the_current_job"


def test_finishing_the_same_run_twice_records_it_once() -> None:
    assert decide(finished(True), FinishRun(job_id=JOB_1, succeeded=False, at=at(9))) == []


@pytest.mark.parametrize("state", [draft(), ready()])
def test_a_project_without_a_run_cannot_finish_one(state: ProjectState) -> None:
    refused(state, FinishRun(job_id=JOB_1, succeeded=True, at=at(9)))


@pytest.mark.parametrize("state", [running(), paused()], ids=["running", "paused"])
def test_cancelling_a_run_returns_the_project_to_ready(state: ProjectState) -> None:
    events = decide(state, CancelRun(job_id=JOB_1, reason="changed my mind", at=at(6)))

    change = status_change(events)
    assert (change.to_status, change.reason, change.job_id) == (
        ProjectStatus.READY,
        "changed my mind",
        JOB_1,
    )
    after = fold(events, state)
    assert after.status is ProjectStatus.READY
    assert after.latest_job_id == JOB_1
    assert fold(decide(after, StartRun(job_id=JOB_2, at=at(7))), after).status is (
        ProjectStatus.RUNNING
    )


def test_cancelling_the_same_run_twice_records_it_once() -> None:
    state = given(CancelRun(job_id=JOB_1, at=at(6)), state=running())

    assert decide(state, CancelRun(job_id=JOB_1, at=at(7))) == []


@pytest.mark.parametrize("state", [draft(), ready(), finished(True)])
def test_a_project_without_a_run_in_progress_has_nothing_to_cancel(state: ProjectState) -> None:
    refused(state, CancelRun(job_id=JOB_1, at=at(9)))


def test_cancelling_a_run_of_another_job_is_refused() -> None:
    error = refused(running(), CancelRun(job_id=JOB_2, at=at(9)))

    assert error.details["reason"] == "not_the_current_job"


# --- archiving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [draft(), ready(), finished(False)])
def test_archiving_a_project_marks_it_archived(state: ProjectState) -> None:
    events = decide(state, ArchiveProject(at=at(9)))

    assert events == [ProjectArchived(project_id=PROJECT_ID, at=at(9))]
    after = fold(events, state)
    assert after.archived
    assert after.status is state.status


@pytest.mark.parametrize("command", EVERY_LATER_COMMAND[:-2], ids=lambda c: type(c).__name__)
def test_an_archived_project_refuses_every_command(command: Command) -> None:
    archived = given(ArchiveProject(at=at(8)), state=ready())

    error = refused(archived, command)

    assert error.details["reason"] == "archived"


def test_archiving_twice_records_nothing() -> None:
    archived = given(ArchiveProject(at=at(8)), state=ready())

    assert decide(archived, ArchiveProject(at=at(9))) == []


@pytest.mark.parametrize("state", [draft(), ready(), finished(False)])
def test_unarchiving_clears_the_flag_and_keeps_the_status(state: ProjectState) -> None:
    archived = given(ArchiveProject(at=at(8)), state=state)

    events = decide(archived, UnarchiveProject(at=at(9)))

    assert events == [ProjectUnarchived(project_id=PROJECT_ID, at=at(9))]
    after = fold(events, archived)
    assert not after.archived
    assert after.status is state.status


def test_unarchiving_a_project_that_is_not_archived_is_refused() -> None:
    error = refused(ready(), UnarchiveProject(at=at(9)))

    assert error.details["reason"] == "not_archived"


@pytest.mark.parametrize("state", [running(), paused()], ids=["running", "paused"])
def test_a_project_cannot_be_archived_during_a_run(state: ProjectState) -> None:
    error = refused(state, ArchiveProject(at=at(9)))

    assert error.details["reason"] == "run_in_progress"


# --- the event registry and fold ----------------------------------------------------------------


def test_the_registry_names_every_project_event_once() -> None:
    assert set(EVENTS.values()) == set(typing.get_args(Event))
    assert all(name.startswith("project.") for name in EVENTS)


def test_folding_the_whole_history_gives_the_state_built_step_by_step() -> None:
    history: list[Event] = []
    state = initial_state()
    commands: list[Command] = [
        create(phases=PLAN),
        post(),
        MarkReady(at=at(2)),
        StartRun(job_id=JOB_1, at=at(3)),
        PauseProject(at=at(4)),
        FinishRun(job_id=JOB_1, succeeded=True, at=at(5)),
        ArchiveProject(at=at(6)),
    ]
    for command in commands:
        events = decide(state, command)
        history += events
        state = fold(events, state)

    assert fold(history) == state
    assert state.status is ProjectStatus.COMPLETED
    assert state.archived
