"""What may be asked of a job: the commands of the job aggregate.

Commands from a worker carry the `fencing_token` of the lease it was given when it claimed the
job; a report under any other token is refused, so a worker whose lease was taken away can
never change the job again. Every command carries `at`, the time it happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs

from helix.domain.job.events import FileChange, JobPriority, OutputStream, Resources
from helix.domain.project.events import PhaseSpec

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_S = 60.0


@attrs.frozen(kw_only=True)
class QueueJob:
    job_id: UUID
    project_id: UUID
    owner: str
    phases: tuple[PhaseSpec, ...]
    requested_by: str
    start_phase: str | None = None
    model: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_duration_s: float | None = None
    priority: JobPriority = JobPriority.NORMAL
    at: datetime


@attrs.frozen(kw_only=True)
class ClaimJob:
    """A worker takes the job; `capabilities`, when given, must cover the phases still to run."""

    worker_id: str
    lease_s: float = DEFAULT_LEASE_S
    capabilities: tuple[str, ...] | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class RenewLease:
    fencing_token: int
    lease_s: float = DEFAULT_LEASE_S
    at: datetime


@attrs.frozen(kw_only=True)
class StartPhase:
    fencing_token: int
    phase: str
    at: datetime


@attrs.frozen(kw_only=True)
class RecordOutput:
    fencing_token: int
    phase: str
    stream: OutputStream
    lines: tuple[str, ...]
    at: datetime


@attrs.frozen(kw_only=True)
class RecordFile:
    fencing_token: int
    phase: str
    path: str
    size: int
    sha256: str
    change: FileChange | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class StoreArtifact:
    """The running phase's file at `path`, uploaded and checked against `sha256`, is stored.
    `max_bytes` and `job_max_bytes` are the deployment's limits (per file, and for the current
    versions of all the job's files together); None: no limit."""

    fencing_token: int
    phase: str
    path: str
    size: int
    sha256: str
    change: FileChange | None = None
    max_bytes: int | None = None
    job_max_bytes: int | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class RecordArtifactNotStored:
    """The running phase's file at `path` was not uploaded, for `reason`."""

    fencing_token: int
    phase: str
    path: str
    size: int
    reason: str
    sha256: str | None = None
    change: FileChange | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class RecordMessage:
    """The running phase posts `content` to the project's discussion."""

    fencing_token: int
    phase: str
    content: str
    at: datetime


@attrs.frozen(kw_only=True)
class RecordCost:
    fencing_token: int
    phase: str
    tokens: int = 0
    usd: float = 0.0
    at: datetime


@attrs.frozen(kw_only=True)
class RecordResources:
    """What the running phase's processes have used so far in this run: CPU seconds, peak
    resident memory and bytes read and written (each a running total or peak: it replaces the
    previous report)."""

    fencing_token: int
    phase: str
    used: Resources
    at: datetime


@attrs.frozen(kw_only=True)
class ReportProgress:
    fencing_token: int
    percent: int
    at: datetime


@attrs.frozen(kw_only=True)
class CompletePhase:
    fencing_token: int
    phase: str
    exit_code: int | None = 0
    at: datetime


@attrs.frozen(kw_only=True)
class FailPhase:
    fencing_token: int
    phase: str
    error: str
    exit_code: int | None = None
    stderr_tail: tuple[str, ...] = ()
    at: datetime


@attrs.frozen(kw_only=True)
class SkipPhase:
    fencing_token: int
    phase: str
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class CompleteJob:
    fencing_token: int
    at: datetime


@attrs.frozen(kw_only=True)
class FailJob:
    fencing_token: int
    error: str
    at: datetime


@attrs.frozen(kw_only=True)
class RequestCancel:
    by: str
    reason: str = "cancelled by request"
    at: datetime


@attrs.frozen(kw_only=True)
class AcknowledgeCancel:
    fencing_token: int
    at: datetime


@attrs.frozen(kw_only=True)
class PauseJob:
    """Hold the job before its next phase. A running phase finishes first, unless `now`: then
    it is stopped (its worker loses the lease) and runs again on resume."""

    by: str
    reason: str = "paused"
    now: bool = False
    at: datetime


@attrs.frozen(kw_only=True)
class ResumeJob:
    by: str
    at: datetime


@attrs.frozen(kw_only=True)
class AcknowledgePause:
    """The worker, told that a pause was requested, stops before the next phase."""

    fencing_token: int
    at: datetime


@attrs.frozen(kw_only=True)
class ExpireLease:
    """Issued by a reaper once the lease has run out.

    `fencing_token`, when given, must still be the job's token: a reaper acting on an old read
    then cannot expire a lease that was granted again in the meantime. `handed_back`: the
    worker holding the lease gives the job back (it is stopping), so the lease ends before
    it runs out; the token is then required.
    """

    reason: str = "lease expired"
    fencing_token: int | None = None
    # The retry backoff's base and cap in seconds (None: the decider's defaults).
    retry_base_s: float | None = None
    retry_cap_s: float | None = None
    handed_back: bool = False
    at: datetime


@attrs.frozen(kw_only=True)
class EnforceDurationLimit:
    """Issued by a reaper: a running job past its `max_duration_s` fails. `fencing_token`,
    when given, must still be the job's, as for ExpireLease."""

    fencing_token: int | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class MarkWaiting:
    """Issued by a reaper: no online worker can claim the queued job (`helix.domain.job.waiting`
    says why). A job already said to be waiting, or no longer queued, gives no event."""

    reason: str
    capabilities: tuple[str, ...]
    at: datetime


@attrs.frozen(kw_only=True)
class RequeueJob:
    """Run a failed job again (an operator's or its owner's call): the phases its failure left
    undone are pending again, and it gets `max_attempts` more claims."""

    by: str
    max_attempts: int
    at: datetime


Command: TypeAlias = (
    QueueJob
    | ClaimJob
    | RenewLease
    | StartPhase
    | RecordOutput
    | RecordFile
    | StoreArtifact
    | RecordArtifactNotStored
    | RecordMessage
    | RecordCost
    | RecordResources
    | ReportProgress
    | CompletePhase
    | FailPhase
    | SkipPhase
    | CompleteJob
    | FailJob
    | RequestCancel
    | AcknowledgeCancel
    | PauseJob
    | ResumeJob
    | AcknowledgePause
    | ExpireLease
    | EnforceDurationLimit
    | MarkWaiting
    | RequeueJob
)

WorkerReport: TypeAlias = (
    RenewLease
    | StartPhase
    | RecordOutput
    | RecordFile
    | StoreArtifact
    | RecordArtifactNotStored
    | RecordMessage
    | RecordCost
    | RecordResources
    | ReportProgress
    | CompletePhase
    | FailPhase
    | SkipPhase
    | CompleteJob
    | FailJob
    | AcknowledgeCancel
    | AcknowledgePause
)
