"""What happened to a job: the events of the job aggregate (stream `job-<uuid>`)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

import attrs

from helix.domain.project.events import PhaseSpec


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    # Held before its next phase, holding no lease, until resumed (not claimable meanwhile).
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPriority(enum.StrEnum):
    """How soon a queued job is claimed: higher first, oldest first within one (the claim
    promotes a job that waited long enough, so none starves; see `projections/jobs.sql`)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Its place in the claim order, as the read model stores it: 0 (low) to 3."""
        return list(JobPriority).index(self)

    @classmethod
    def of_rank(cls, rank: int) -> JobPriority:
        return list(cls)[rank]


class PhaseStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class OutputStream(enum.StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class FileChange(enum.StrEnum):
    """Whether a phase made a file the workspace did not have before it, or changed one."""

    CREATED = "created"
    MODIFIED = "modified"


# `JobFailed.reason` of a job that ran past its duration limit.
DURATION_LIMIT = "duration_limit"


@attrs.frozen(kw_only=True)
class JobQueued:
    """A job was created; `phases` is the project's plan as it was at that moment."""

    job_id: UUID
    project_id: UUID
    owner: str
    phases: tuple[PhaseSpec, ...]
    start_phase: str | None
    model: str | None
    requested_by: str
    max_attempts: int
    # Seconds the job may run, from its start, before it is failed; None: no limit.
    max_duration_s: float | None = None
    # Jobs queued before priorities existed were all alike: `normal`.
    priority: JobPriority = JobPriority.NORMAL
    at: datetime


@attrs.frozen(kw_only=True)
class JobClaimed:
    job_id: UUID
    worker_id: str
    fencing_token: int
    lease_expires_at: datetime
    attempt: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobLeaseRenewed:
    job_id: UUID
    fencing_token: int
    lease_expires_at: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class JobStarted:
    job_id: UUID
    worker_id: str
    attempt: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseStarted:
    job_id: UUID
    phase: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseOutput:
    """A batch of output lines; line numbers are 1-based and dense per phase, across streams
    and attempts, so a reader can order and de-duplicate them. `attempt` is the claim that
    wrote them (1, 2 …): a retried job's lines tell one run from the next."""

    job_id: UUID
    phase: str
    stream: OutputStream
    lines: tuple[str, ...]
    first_line_no: int
    attempt: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseFile:
    job_id: UUID
    phase: str
    path: str
    size: int
    sha256: str
    # None in events recorded before workers told created from modified.
    change: FileChange | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class JobArtifactStored:
    """A file of the running phase was uploaded, checked against its SHA-256 and stored: the
    bytes live in the artifact store under that digest, the event says what they are. It is
    the path's current version from now on (for downloads), whatever attempt or phase wrote
    the one before."""

    job_id: UUID
    phase: str
    path: str
    size: int
    sha256: str
    change: FileChange | None = None
    attempt: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobArtifactNotStored:
    """A file of the running phase was not uploaded (over a size limit, unreadable, changed
    while it was read); `reason` says why. The path's current version from now on, as for
    JobArtifactStored: nothing is downloadable under it until a later attempt stores it."""

    job_id: UUID
    phase: str
    path: str
    size: int
    sha256: str | None = None
    change: FileChange | None = None
    attempt: int
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseMessage:
    """A running phase said something to the project's discussion (posted there as `agent`)."""

    job_id: UUID
    phase: str
    content: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseCost:
    job_id: UUID
    phase: str
    tokens: int
    usd: float
    at: datetime


@attrs.frozen(kw_only=True)
class Resources:
    """What a phase's processes used in one run: CPU seconds (user and system), the peak
    resident memory, and the bytes they read and wrote through system calls."""

    cpu_s: float
    max_rss_bytes: int
    read_bytes: int
    write_bytes: int

    def fields(self) -> dict[str, float | int]:
        return {
            "cpu_s": self.cpu_s,
            "max_rss_bytes": self.max_rss_bytes,
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
        }

    @classmethod
    def total(cls, phases: Iterable[Resources | None]) -> Resources | None:
        """A job's, from its phases' (None: no phase reported any): CPU and bytes summed, the
        peak memory the largest phase's, since phases run one after another."""
        known = [r for r in phases if r is not None]
        if not known:
            return None
        return cls(
            cpu_s=sum(r.cpu_s for r in known),
            max_rss_bytes=max(r.max_rss_bytes for r in known),
            read_bytes=sum(r.read_bytes for r in known),
            write_bytes=sum(r.write_bytes for r in known),
        )


@attrs.frozen(kw_only=True)
class JobPhaseResources:
    """The running phase's resource usage so far in this run, as its worker sampled it (at
    each heartbeat and at the phase's end); it replaces the phase's previous figures."""

    job_id: UUID
    phase: str
    cpu_s: float
    max_rss_bytes: int
    read_bytes: int
    write_bytes: int
    at: datetime

    @classmethod
    def of(cls, job_id: UUID, phase: str, used: Resources, at: datetime) -> JobPhaseResources:
        return cls(
            job_id=job_id,
            phase=phase,
            cpu_s=float(used.cpu_s),
            max_rss_bytes=used.max_rss_bytes,
            read_bytes=used.read_bytes,
            write_bytes=used.write_bytes,
            at=at,
        )

    @property
    def resources(self) -> Resources:
        return Resources(
            cpu_s=self.cpu_s,
            max_rss_bytes=self.max_rss_bytes,
            read_bytes=self.read_bytes,
            write_bytes=self.write_bytes,
        )


@attrs.frozen(kw_only=True)
class JobPhaseCompleted:
    job_id: UUID
    phase: str
    exit_code: int | None
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseFailed:
    job_id: UUID
    phase: str
    exit_code: int | None
    error: str
    stderr_tail: tuple[str, ...] = ()
    at: datetime


@attrs.frozen(kw_only=True)
class JobPhaseSkipped:
    job_id: UUID
    phase: str
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobProgressReported:
    job_id: UUID
    percent: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobCancelRequested:
    job_id: UUID
    by: str
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobCancelled:
    job_id: UUID
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobPauseRequested:
    """The job is to pause once its running phase ends: no further phase starts until then."""

    job_id: UUID
    by: str
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobPaused:
    """The job is held before its next phase and its lease is released (its worker's token is
    stale from now on). `stopped_phase`: the running phase, stopped and back to pending, so
    that it runs again on resume."""

    job_id: UUID
    reason: str
    stopped_phase: str | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class JobResumed:
    """A paused job is queued again (any worker may claim it); a pause still waiting for its
    phase to end is withdrawn."""

    job_id: UUID
    by: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobStuck:
    """The worker holding the lease stopped renewing it; its fencing token is now stale."""

    job_id: UUID
    worker_id: str | None
    fencing_token: int
    reason: str
    at: datetime


@attrs.frozen(kw_only=True)
class JobWaiting:
    """The queued job can be claimed by no online worker: none offers `capabilities` (all of
    them, together). Said once per episode: again only after the job was claimed, paused or
    ended and queued once more."""

    job_id: UUID
    reason: str
    capabilities: tuple[str, ...]
    at: datetime


@attrs.frozen(kw_only=True)
class JobRetryScheduled:
    """The job is queued again; `attempt` is the number the next claim will get."""

    job_id: UUID
    attempt: int
    not_before: datetime
    at: datetime


@attrs.frozen(kw_only=True)
class JobRequeued:
    """A failed job is queued again by `by`: `phases` (the ones its failure left undone) are
    pending again, and it may be claimed until its attempts reach `max_attempts`."""

    job_id: UUID
    by: str
    phases: tuple[str, ...]
    max_attempts: int
    at: datetime


@attrs.frozen(kw_only=True)
class JobResult:
    """What a job came to when it ended: its phases that completed (of all it has), the files
    stored for it, and its cost."""

    phases_completed: int
    phases: int
    files: int
    cost_tokens: int
    cost_usd: float


@attrs.frozen(kw_only=True)
class JobCompleted:
    job_id: UUID
    # Seconds from its first start (its queueing, if it never started) to its end, and what
    # it came to; None in events written before they were recorded.
    duration_s: float | None = None
    result: JobResult | None = None
    at: datetime


@attrs.frozen(kw_only=True)
class JobFailed:
    job_id: UUID
    error: str
    dead_lettered: bool = False
    # Why, where it is one of a few known causes (DURATION_LIMIT); None otherwise.
    reason: str | None = None
    duration_s: float | None = None
    result: JobResult | None = None
    at: datetime


Event: TypeAlias = (
    JobQueued
    | JobClaimed
    | JobLeaseRenewed
    | JobStarted
    | JobPhaseStarted
    | JobPhaseOutput
    | JobPhaseFile
    | JobArtifactStored
    | JobArtifactNotStored
    | JobPhaseMessage
    | JobPhaseCost
    | JobPhaseResources
    | JobPhaseCompleted
    | JobPhaseFailed
    | JobPhaseSkipped
    | JobProgressReported
    | JobCancelRequested
    | JobCancelled
    | JobPauseRequested
    | JobPaused
    | JobResumed
    | JobStuck
    | JobWaiting
    | JobRetryScheduled
    | JobCompleted
    | JobFailed
    | JobRequeued
)

EVENTS: dict[str, type] = {
    "job.queued": JobQueued,
    "job.claimed": JobClaimed,
    "job.lease_renewed": JobLeaseRenewed,
    "job.started": JobStarted,
    "job.phase_started": JobPhaseStarted,
    "job.phase_output": JobPhaseOutput,
    "job.phase_file": JobPhaseFile,
    "job.artifact_stored": JobArtifactStored,
    "job.artifact_not_stored": JobArtifactNotStored,
    "job.phase_message": JobPhaseMessage,
    "job.phase_cost": JobPhaseCost,
    "job.phase_resources": JobPhaseResources,
    "job.phase_completed": JobPhaseCompleted,
    "job.phase_failed": JobPhaseFailed,
    "job.phase_skipped": JobPhaseSkipped,
    "job.progress": JobProgressReported,
    "job.cancel_requested": JobCancelRequested,
    "job.cancelled": JobCancelled,
    "job.pause_requested": JobPauseRequested,
    "job.paused": JobPaused,
    "job.resumed": JobResumed,
    "job.stuck": JobStuck,
    "job.waiting": JobWaiting,
    "job.retry_scheduled": JobRetryScheduled,
    "job.completed": JobCompleted,
    "job.failed": JobFailed,
    "job.requeued": JobRequeued,
}

# The event that puts a job in each terminal status: the one definition of "the job is over",
# for the decider, the read models' JSON and the job streams' end.
TERMINAL_EVENTS: dict[JobStatus, type] = {
    JobStatus.COMPLETED: JobCompleted,
    JobStatus.FAILED: JobFailed,
    JobStatus.CANCELLED: JobCancelled,
}
TERMINAL = frozenset(TERMINAL_EVENTS)
TERMINAL_EVENT_TYPES = frozenset(
    name for name, cls in EVENTS.items() if cls in TERMINAL_EVENTS.values()
)
