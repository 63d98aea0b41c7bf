"""The project aggregate: a piece of AI development work, its discussion and its phase plan."""

from __future__ import annotations

from uuid import UUID

from helix.domain.project.commands import (
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
from helix.domain.project.decider import (
    INITIAL,
    Message,
    ProjectState,
    decide,
    evolve,
    fold,
    initial_state,
    normalise_phases,
)
from helix.domain.project.events import (
    EVENTS,
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

STREAM_TYPE = "project"


def stream_id(project_id: UUID) -> str:
    return f"{STREAM_TYPE}-{project_id}"


__all__ = [
    "EVENTS",
    "INITIAL",
    "STREAM_TYPE",
    "ArchiveProject",
    "CancelRun",
    "Command",
    "CreateProject",
    "EnvValue",
    "Event",
    "FinishRun",
    "MarkReady",
    "Message",
    "MessageRole",
    "PauseProject",
    "PhaseSpec",
    "PlanPhases",
    "PostMessage",
    "ProjectArchived",
    "ProjectCreated",
    "ProjectMessagePosted",
    "ProjectPhasesPlanned",
    "ProjectState",
    "ProjectStatus",
    "ProjectStatusChanged",
    "ProjectUnarchived",
    "ProjectUpdated",
    "ResumeProject",
    "SealedSecret",
    "StartRun",
    "UnarchiveProject",
    "UpdateProject",
    "decide",
    "evolve",
    "fold",
    "initial_state",
    "normalise_phases",
    "stream_id",
]
