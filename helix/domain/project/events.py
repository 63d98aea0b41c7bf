"""What happened to a project: the events of the project aggregate (stream `project-<uuid>`)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs


class ProjectStatus(enum.StrEnum):
    DRAFT = "draft"
    DISCUSSING = "discussing"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class MessageRole(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    AGENT = "agent"
    SYSTEM = "system"


@attrs.frozen(kw_only=True)
class SealedSecret:
    """A secret environment value as the service layer sealed it for one project's variable.

    Opaque here: the domain never holds a secret's plaintext, never encrypts nor decrypts; it
    keeps, compares and copies the sealed text. Its JSON form carries a redaction marker, so
    every reader of an event (views, the audit log, streams, webhooks, exports) shows it
    redacted.
    """

    sealed: str = attrs.field(repr=False)


# A phase's environment value: plain text, or a secret sealed by the service layer.
EnvValue: TypeAlias = str | SealedSecret


@attrs.frozen(kw_only=True)
class PhaseSpec:
    """One step of a project's plan; a job snapshots the plan when it is queued.

    `command` is an argv (no shell parsing); a phase without one is carried out by an agent
    worker. `capabilities` are what a worker must offer to run the phase. `env` values are
    plain text or sealed secrets; a worker gets the secrets' plaintext only with its claim.
    `prompt` is what an agent phase is asked to do (its command gets it as HELIX_PROMPT).
    """

    name: str
    command: tuple[str, ...] | None = None
    timeout_s: float | None = None
    capabilities: tuple[str, ...] = ()
    env: dict[str, EnvValue] = attrs.field(factory=dict)
    prompt: str | None = None


@attrs.frozen(kw_only=True)
class ProjectCreated:
    project_id: UUID
    name: str
    description: str
    project_type: str
    owner: str
    # Seconds a job of the project may run before it is failed; None: the deployment's limit.
    max_job_duration_s: float | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectUpdated:
    """Only the fields that changed are set; None means unchanged (and a `max_job_duration_s`
    of 0, that the project's own limit was cleared)."""

    project_id: UUID
    name: str | None = None
    description: str | None = None
    project_type: str | None = None
    max_job_duration_s: float | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectPhasesPlanned:
    project_id: UUID
    phases: tuple[PhaseSpec, ...]
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectStatusChanged:
    project_id: UUID
    from_status: ProjectStatus
    to_status: ProjectStatus
    reason: str
    # The job a run-related change is about (start, finish, cancel); None otherwise.
    job_id: UUID | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectMessagePosted:
    project_id: UUID
    message_id: UUID
    role: MessageRole
    author: str
    content: str
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectArchived:
    project_id: UUID
    at: datetime


@attrs.frozen(kw_only=True)
class ProjectUnarchived:
    project_id: UUID
    at: datetime


Event: TypeAlias = (
    ProjectCreated
    | ProjectUpdated
    | ProjectPhasesPlanned
    | ProjectStatusChanged
    | ProjectMessagePosted
    | ProjectArchived
    | ProjectUnarchived
)

EVENTS: dict[str, type] = {
    "project.created": ProjectCreated,
    "project.updated": ProjectUpdated,
    "project.phases_planned": ProjectPhasesPlanned,
    "project.status_changed": ProjectStatusChanged,
    "project.message_posted": ProjectMessagePosted,
    "project.archived": ProjectArchived,
    "project.unarchived": ProjectUnarchived,
}
