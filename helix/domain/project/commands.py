"""What may be asked of a project: the commands of the project aggregate.

Every command carries `at`, the time it happens, and any ids the handler generated, so that
`decide` is deterministic and never reads a clock or a random source.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs

from helix.domain.project.events import MessageRole, PhaseSpec

DEFAULT_PROJECT_TYPE = "general"


@attrs.frozen(kw_only=True)
class CreateProject:
    project_id: UUID
    name: str
    owner: str
    description: str = ""
    project_type: str = DEFAULT_PROJECT_TYPE
    phases: tuple[PhaseSpec, ...] = ()
    max_job_duration_s: float | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class UpdateProject:
    """Fields left as None are not changed; a `max_job_duration_s` of 0 clears the project's
    own limit."""

    name: str | None = None
    description: str | None = None
    project_type: str | None = None
    max_job_duration_s: float | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class PlanPhases:
    phases: tuple[PhaseSpec, ...]
    at: datetime


@attrs.frozen(kw_only=True)
class PostMessage:
    message_id: UUID
    role: MessageRole
    author: str
    content: str
    at: datetime


@attrs.frozen(kw_only=True)
class MarkReady:
    at: datetime


@attrs.frozen(kw_only=True)
class StartRun:
    job_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class PauseProject:
    reason: str = "paused"
    at: datetime


@attrs.frozen(kw_only=True)
class ResumeProject:
    reason: str = "resumed"
    at: datetime


@attrs.frozen(kw_only=True)
class FinishRun:
    job_id: UUID
    succeeded: bool
    reason: str = ""
    at: datetime


@attrs.frozen(kw_only=True)
class CancelRun:
    job_id: UUID
    reason: str = "cancelled"
    at: datetime


@attrs.frozen(kw_only=True)
class ArchiveProject:
    at: datetime


@attrs.frozen(kw_only=True)
class UnarchiveProject:
    at: datetime


Command: TypeAlias = (
    CreateProject
    | UpdateProject
    | PlanPhases
    | PostMessage
    | MarkReady
    | StartRun
    | PauseProject
    | ResumeProject
    | FinishRun
    | CancelRun
    | ArchiveProject
    | UnarchiveProject
)
