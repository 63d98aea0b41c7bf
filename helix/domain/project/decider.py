"""The project aggregate as a decider: `decide(state, command) -> events`, `evolve(state, event)`.

Status machine (`archived` is a flag beside it; UnarchiveProject clears it):

    draft ──message──▶ discussing
    draft | discussing ──MarkReady (needs ≥ 1 phase)──▶ ready
    ready | completed | failed ──StartRun(job)──▶ running
    running ──Pause──▶ paused ──Resume──▶ running
    running | paused ──FinishRun(job)──▶ completed | failed
    running | paused ──CancelRun(job)──▶ ready      (so the project can simply run again)

A project runs one job at a time: StartRun is refused while running or paused. The run commands
name their job, and repeating one for the same job returns no events, so a process manager
that follows job events may deliver them more than once. Archiving is refused while a run is in
progress (cancel it first); an archived project refuses every command except ArchiveProject,
which returns no events, and UnarchiveProject, which brings it back with its status unchanged
(refused on a project that is not archived).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn, assert_never
from uuid import UUID

import attrs

from helix.domain.project.commands import (
    DEFAULT_PROJECT_TYPE,
    ArchiveProject,
    CancelRun,
    Command,
    CreateProject,
    FinishRun,
    MarkReady,
    PauseProject,
    PlanPhases,
    PostMessage,
    ResumeProject,
    StartRun,
    UnarchiveProject,
    UpdateProject,
)
from helix.domain.project.events import (
    EnvValue,
    Event,
    MessageRole,
    PhaseSpec,
    ProjectArchived,
    ProjectCreated,
    ProjectMessagePosted,
    ProjectPhasesPlanned,
    ProjectStatus,
    ProjectStatusChanged,
    ProjectUnarchived,
    ProjectUpdated,
    SealedSecret,
)
from helix.errors import InvalidTransition, ValidationError

MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 20_000
MAX_PROJECT_TYPE_CHARS = 64
MAX_AUTHOR_CHARS = 200
MAX_MESSAGE_CHARS = 100_000
MAX_REASON_CHARS = 2_000
MAX_PROMPT_CHARS = 20_000
# A job's duration limit, in seconds: a week at most.
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_PHASES = 100
MAX_PHASE_NAME_CHARS = 100
# A phase without capabilities needs the one named after it, so a capability is a phase name.
MAX_CAPABILITY_CHARS = MAX_PHASE_NAME_CHARS
MAX_CAPABILITIES = 50
MAX_COMMAND_ARGS = 1_000
# An environment variable name a POSIX shell can export; the API schemas publish it as is.
ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
# A sealed secret is its plaintext's ciphertext plus a key id, nonce and tag, in base64: far
# below this for any secret the service layer accepts (helix.services.phase_secrets).
MAX_SEALED_CHARS = 32_768
SHELL_CAPABILITY = "shell"

_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_PLANNABLE = frozenset(
    {
        ProjectStatus.DRAFT,
        ProjectStatus.DISCUSSING,
        ProjectStatus.READY,
        ProjectStatus.COMPLETED,
        ProjectStatus.FAILED,
    }
)
_STARTABLE = frozenset({ProjectStatus.READY, ProjectStatus.COMPLETED, ProjectStatus.FAILED})
_IN_RUN = frozenset({ProjectStatus.RUNNING, ProjectStatus.PAUSED})
_FINISHED = frozenset({ProjectStatus.COMPLETED, ProjectStatus.FAILED})


@attrs.frozen(kw_only=True)
class Message:
    message_id: UUID
    role: MessageRole
    author: str
    content: str
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectState:
    """A project folded from its events; `status is None` means it does not exist yet."""

    id: UUID | None = None
    name: str = ""
    description: str = ""
    project_type: str = DEFAULT_PROJECT_TYPE
    owner: str = ""
    phases: tuple[PhaseSpec, ...] = ()
    status: ProjectStatus | None = None
    archived: bool = False
    messages: tuple[Message, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    latest_job_id: UUID | None = None
    # The project's own limit on a job's duration, in seconds; None: the deployment's.
    max_job_duration_s: float | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None


INITIAL = ProjectState()


def initial_state() -> ProjectState:
    return INITIAL


def fold(events: Iterable[Event], state: ProjectState = INITIAL) -> ProjectState:
    for event in events:
        state = evolve(state, event)
    return state


# --- validation shared with the job aggregate ---------------------------------------------


def as_utc(at: datetime, field: str = "at") -> datetime:
    """The instant `at` in UTC; a naive datetime is refused, since its instant is unknown."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(f"{field} must be a timezone-aware datetime", field=field)
    return at.astimezone(UTC)


def check_text(value: str, field: str, *, max_chars: int, required: bool = True) -> str:
    if required and not value.strip():
        raise ValidationError(f"{field} must not be empty", field=field)
    if len(value) > max_chars:
        raise ValidationError(
            f"{field} must be at most {max_chars} characters", field=field, max_chars=max_chars
        )
    return value


def check_duration(seconds: float | None, field: str) -> None:
    """A duration limit is a positive number of seconds, up to MAX_DURATION_S, or None."""
    if seconds is not None and not (math.isfinite(seconds) and 0 < seconds <= MAX_DURATION_S):
        raise ValidationError(
            f"{field} must be between 0 and {MAX_DURATION_S:g} seconds", field=field
        )


def check_env_name(name: str, field: str, phase: str) -> None:
    if not _ENV_NAME.fullmatch(name):
        raise ValidationError(f"invalid environment variable {name!r}", field=field, phase=phase)


def _env_value_ok(value: EnvValue) -> bool:
    if isinstance(value, SealedSecret):
        return 0 < len(value.sealed) <= MAX_SEALED_CHARS and value.sealed.isascii()
    return "\x00" not in value


def normalise_phases(phases: Iterable[PhaseSpec]) -> tuple[PhaseSpec, ...]:
    """Validate a phase plan and return it normalised.

    A phase with no capabilities needs `shell` if it has a command, else the capability named
    after the phase: the plan says so explicitly, so a worker's capability match never has to
    know the rule.
    """
    plan = tuple(phases)
    if len(plan) > MAX_PHASES:
        raise ValidationError(f"a plan has at most {MAX_PHASES} phases", field="phases")
    seen: set[str] = set()
    normalised: list[PhaseSpec] = []
    for index, phase in enumerate(plan):
        where = f"phases[{index}]"
        check_text(phase.name, f"{where}.name", max_chars=MAX_PHASE_NAME_CHARS)
        if phase.name in seen:
            raise ValidationError(
                f"phase name {phase.name!r} is used twice", field=f"{where}.name", phase=phase.name
            )
        seen.add(phase.name)
        if phase.command is not None and (not phase.command or not phase.command[0].strip()):
            raise ValidationError(
                "a phase command must name a program", field=f"{where}.command", phase=phase.name
            )
        if phase.command is not None and any("\x00" in arg for arg in phase.command):
            raise ValidationError(
                "a phase command must not contain NUL", field=f"{where}.command", phase=phase.name
            )
        if phase.command is not None and len(phase.command) > MAX_COMMAND_ARGS:
            raise ValidationError(
                f"a phase command has at most {MAX_COMMAND_ARGS} arguments",
                field=f"{where}.command",
                phase=phase.name,
            )
        if len(phase.capabilities) > MAX_CAPABILITIES:
            raise ValidationError(
                f"a phase needs at most {MAX_CAPABILITIES} capabilities",
                field=f"{where}.capabilities",
                phase=phase.name,
            )
        if phase.timeout_s is not None and not (
            math.isfinite(phase.timeout_s) and phase.timeout_s > 0
        ):
            raise ValidationError(
                "a phase timeout must be a positive number of seconds",
                field=f"{where}.timeout_s",
                phase=phase.name,
            )
        for capability in phase.capabilities:
            check_text(capability, f"{where}.capabilities", max_chars=MAX_CAPABILITY_CHARS)
        if phase.prompt is not None:
            check_text(phase.prompt, f"{where}.prompt", max_chars=MAX_PROMPT_CHARS)
            if "\x00" in phase.prompt:
                raise ValidationError(
                    "a phase prompt must not contain NUL", field=f"{where}.prompt", phase=phase.name
                )
        for key, value in phase.env.items():
            check_env_name(key, f"{where}.env", phase.name)
            if not _env_value_ok(value):
                raise ValidationError(
                    f"invalid value of environment variable {key!r}",
                    field=f"{where}.env.{key}",
                    phase=phase.name,
                )
        capabilities = tuple(dict.fromkeys(phase.capabilities))
        if not capabilities:
            # A command runs in a shell worker; a phase without one waits for a worker that
            # offers the capability named after it (an agent that knows how to `review`).
            capabilities = (SHELL_CAPABILITY,) if phase.command is not None else (phase.name,)
        normalised.append(attrs.evolve(phase, capabilities=capabilities, env=dict(phase.env)))
    return tuple(normalised)


# --- decide ---------------------------------------------------------------------------------


def _refuse(state: ProjectState, message: str, reason: str, **details: Any) -> NoReturn:
    current = state.status.value if state.status is not None else None
    raise InvalidTransition(message, current=current, reason=reason, **details)


def decide(state: ProjectState, command: Command) -> list[Event]:
    """The events that `command` causes, or InvalidTransition / ValidationError."""
    if isinstance(command, CreateProject):
        return _create(state, command)
    status = state.status
    if status is None:
        _refuse(state, "project does not exist", "not_found")
    if state.archived:
        if isinstance(command, ArchiveProject):
            return []
        if isinstance(command, UnarchiveProject):
            return [ProjectUnarchived(project_id=_id(state), at=as_utc(command.at))]
        _refuse(state, "project is archived", "archived")
    at = as_utc(command.at)
    match command:
        case UpdateProject():
            return _update(state, command, at)
        case PlanPhases():
            return _plan(state, status, command, at)
        case PostMessage():
            return _post(state, status, command, at)
        case MarkReady():
            return _mark_ready(state, status, at)
        case StartRun():
            return _start_run(state, status, command, at)
        case PauseProject():
            return _pause(state, status, command, at)
        case ResumeProject():
            return _resume(state, status, command, at)
        case FinishRun():
            return _finish_run(state, status, command, at)
        case CancelRun():
            return _cancel_run(state, status, command, at)
        case ArchiveProject():
            if status in _IN_RUN:
                _refuse(state, f"cannot archive a {status.value} project", "run_in_progress")
            return [ProjectArchived(project_id=_id(state), at=at)]
        case UnarchiveProject():
            _refuse(state, "project is not archived", "not_archived")
        case _:
            assert_never(command)


def _id(state: ProjectState) -> UUID:
    assert state.id is not None
    return state.id


def _changed(
    state: ProjectState,
    status: ProjectStatus,
    to: ProjectStatus,
    reason: str,
    at: datetime,
    *,
    job_id: UUID | None = None,
) -> ProjectStatusChanged:
    return ProjectStatusChanged(
        project_id=_id(state), from_status=status, to_status=to, reason=reason, job_id=job_id, at=at
    )


def _create(state: ProjectState, command: CreateProject) -> list[Event]:
    if state.exists:
        _refuse(state, "project already exists", "already_exists")
    at = as_utc(command.at)
    check_text(command.name, "name", max_chars=MAX_NAME_CHARS)
    check_text(command.description, "description", max_chars=MAX_DESCRIPTION_CHARS, required=False)
    check_text(command.project_type, "project_type", max_chars=MAX_PROJECT_TYPE_CHARS)
    check_text(command.owner, "owner", max_chars=MAX_AUTHOR_CHARS)
    check_duration(command.max_job_duration_s, "max_job_duration")
    phases = normalise_phases(command.phases)
    events: list[Event] = [
        ProjectCreated(
            project_id=command.project_id,
            name=command.name,
            description=command.description,
            project_type=command.project_type,
            owner=command.owner,
            max_job_duration_s=command.max_job_duration_s,
            at=at,
        )
    ]
    if phases:
        events.append(ProjectPhasesPlanned(project_id=command.project_id, phases=phases, at=at))
    return events


def _update(state: ProjectState, command: UpdateProject, at: datetime) -> list[Event]:
    name = description = project_type = None
    if command.name is not None and command.name != state.name:
        name = check_text(command.name, "name", max_chars=MAX_NAME_CHARS)
    if command.description is not None and command.description != state.description:
        description = check_text(
            command.description, "description", max_chars=MAX_DESCRIPTION_CHARS, required=False
        )
    if command.project_type is not None and command.project_type != state.project_type:
        project_type = check_text(
            command.project_type, "project_type", max_chars=MAX_PROJECT_TYPE_CHARS
        )
    limit = command.max_job_duration_s
    if limit is not None and (limit or None) != state.max_job_duration_s:
        # 0 clears the project's own limit (HELIX_MAX_JOB_DURATION applies again).
        check_duration(limit or None, "max_job_duration")
    else:
        limit = None
    if name is None and description is None and project_type is None and limit is None:
        return []
    return [
        ProjectUpdated(
            project_id=_id(state),
            name=name,
            description=description,
            project_type=project_type,
            max_job_duration_s=limit,
            at=at,
        )
    ]


def _plan(
    state: ProjectState, status: ProjectStatus, command: PlanPhases, at: datetime
) -> list[Event]:
    if status not in _PLANNABLE:
        _refuse(state, f"cannot change the plan of a {status.value} project", "run_in_progress")
    phases = normalise_phases(command.phases)
    if not phases:
        raise ValidationError("a plan needs at least one phase", field="phases")
    if phases == state.phases:
        return []
    return [ProjectPhasesPlanned(project_id=_id(state), phases=phases, at=at)]


def _post(
    state: ProjectState, status: ProjectStatus, command: PostMessage, at: datetime
) -> list[Event]:
    try:
        role = MessageRole(command.role)
    except ValueError:
        raise ValidationError(
            f"role must be one of {', '.join(r.value for r in MessageRole)}", field="role"
        ) from None
    check_text(command.author, "author", max_chars=MAX_AUTHOR_CHARS)
    check_text(command.content, "content", max_chars=MAX_MESSAGE_CHARS)
    events: list[Event] = [
        ProjectMessagePosted(
            project_id=_id(state),
            message_id=command.message_id,
            role=role,
            author=command.author,
            content=command.content,
            at=at,
        )
    ]
    if status is ProjectStatus.DRAFT:
        events.append(_changed(state, status, ProjectStatus.DISCUSSING, "first message posted", at))
    return events


def _mark_ready(state: ProjectState, status: ProjectStatus, at: datetime) -> list[Event]:
    if status is ProjectStatus.READY:
        return []
    if status not in (ProjectStatus.DRAFT, ProjectStatus.DISCUSSING):
        _refuse(state, f"a {status.value} project cannot be marked ready", "invalid_status")
    if not state.phases:
        _refuse(state, "a project needs at least one phase to be ready", "no_phases")
    return [_changed(state, status, ProjectStatus.READY, "marked ready", at)]


def _start_run(
    state: ProjectState, status: ProjectStatus, command: StartRun, at: datetime
) -> list[Event]:
    if status is ProjectStatus.RUNNING and state.latest_job_id == command.job_id:
        return []
    if status not in _STARTABLE:
        _refuse(state, f"a {status.value} project cannot start a run", "invalid_status")
    if not state.phases:
        _refuse(state, "a project needs at least one phase to run", "no_phases")
    return [
        _changed(state, status, ProjectStatus.RUNNING, "run started", at, job_id=command.job_id)
    ]


def _pause(
    state: ProjectState, status: ProjectStatus, command: PauseProject, at: datetime
) -> list[Event]:
    if status is ProjectStatus.PAUSED:
        return []
    if status is not ProjectStatus.RUNNING:
        _refuse(state, f"a {status.value} project cannot be paused", "invalid_status")
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    return [_changed(state, status, ProjectStatus.PAUSED, reason or "paused", at)]


def _resume(
    state: ProjectState, status: ProjectStatus, command: ResumeProject, at: datetime
) -> list[Event]:
    if status is ProjectStatus.RUNNING:
        return []
    if status is not ProjectStatus.PAUSED:
        _refuse(state, f"a {status.value} project cannot be resumed", "invalid_status")
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    return [_changed(state, status, ProjectStatus.RUNNING, reason or "resumed", at)]


def _finish_run(
    state: ProjectState, status: ProjectStatus, command: FinishRun, at: datetime
) -> list[Event]:
    same_job = state.latest_job_id == command.job_id
    if status in _FINISHED and same_job:
        return []
    if status not in _IN_RUN:
        _refuse(state, f"a {status.value} project has no run to finish", "invalid_status")
    if not same_job:
        _refuse(state, "that job is not the project's current run", "not_the_current_job")
    to = ProjectStatus.COMPLETED if command.succeeded else ProjectStatus.FAILED
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    default = "run completed" if command.succeeded else "run failed"
    return [_changed(state, status, to, reason or default, at, job_id=command.job_id)]


def _cancel_run(
    state: ProjectState, status: ProjectStatus, command: CancelRun, at: datetime
) -> list[Event]:
    same_job = state.latest_job_id == command.job_id
    # After a cancel the project is ready again with the cancelled job as its latest run.
    if status is ProjectStatus.READY and same_job:
        return []
    if status not in _IN_RUN:
        _refuse(state, f"a {status.value} project has no run to cancel", "invalid_status")
    if not same_job:
        _refuse(state, "that job is not the project's current run", "not_the_current_job")
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    return [
        _changed(
            state, status, ProjectStatus.READY, reason or "run cancelled", at, job_id=command.job_id
        )
    ]


# --- evolve ---------------------------------------------------------------------------------


def evolve(state: ProjectState, event: Event) -> ProjectState:
    match event:
        case ProjectCreated():
            return ProjectState(
                id=event.project_id,
                name=event.name,
                description=event.description,
                project_type=event.project_type,
                owner=event.owner,
                max_job_duration_s=event.max_job_duration_s,
                status=ProjectStatus.DRAFT,
                created_at=event.at,
                updated_at=event.at,
            )
        case ProjectUpdated():
            return attrs.evolve(
                state,
                name=state.name if event.name is None else event.name,
                description=state.description if event.description is None else event.description,
                project_type=(
                    state.project_type if event.project_type is None else event.project_type
                ),
                max_job_duration_s=(
                    state.max_job_duration_s
                    if event.max_job_duration_s is None
                    else event.max_job_duration_s or None
                ),
                updated_at=event.at,
            )
        case ProjectPhasesPlanned():
            return attrs.evolve(state, phases=event.phases, updated_at=event.at)
        case ProjectStatusChanged():
            latest = state.latest_job_id if event.job_id is None else event.job_id
            return attrs.evolve(
                state, status=event.to_status, latest_job_id=latest, updated_at=event.at
            )
        case ProjectMessagePosted():
            message = Message(
                message_id=event.message_id,
                role=event.role,
                author=event.author,
                content=event.content,
                at=event.at,
            )
            return attrs.evolve(state, messages=(*state.messages, message), updated_at=event.at)
        case ProjectArchived():
            return attrs.evolve(state, archived=True, updated_at=event.at)
        case ProjectUnarchived():
            return attrs.evolve(state, archived=False, updated_at=event.at)
        case _:
            assert_never(event)
