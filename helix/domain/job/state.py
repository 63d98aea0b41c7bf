"""The job aggregate's state, and how each event changes it (`evolve`, `fold`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, assert_never
from uuid import UUID

import attrs

from helix.domain.job.events import (
    TERMINAL,
    Event,
    JobArtifactNotStored,
    JobArtifactStored,
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobCompleted,
    JobFailed,
    JobLeaseRenewed,
    JobPaused,
    JobPauseRequested,
    JobPhaseCompleted,
    JobPhaseCost,
    JobPhaseFailed,
    JobPhaseFile,
    JobPhaseMessage,
    JobPhaseOutput,
    JobPhaseResources,
    JobPhaseSkipped,
    JobPhaseStarted,
    JobPriority,
    JobProgressReported,
    JobQueued,
    JobRequeued,
    JobResumed,
    JobRetryScheduled,
    JobStarted,
    JobStatus,
    JobStuck,
    JobWaiting,
    PhaseStatus,
    Resources,
)
from helix.domain.job.waiting import Waiting
from helix.domain.project.events import EnvValue, PhaseSpec


@attrs.frozen(kw_only=True)
class FileRecord:
    path: str
    size: int
    sha256: str
    change: str | None = None  # "created" | "modified"; None when the worker did not say

    def fields(self) -> dict[str, Any]:
        """The record as the phases read model and the views hold it (`change` only when the
        worker said)."""
        found: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.change is not None:
            found["change"] = self.change
        return found


@attrs.frozen(kw_only=True)
class Artifact:
    """The current version of one of the job's files: stored (downloadable by its sha256) or
    not, with the reason. A later attempt's (or phase's) record for the same path replaces it."""

    path: str
    phase: str
    attempt: int
    size: int
    sha256: str | None
    change: str | None
    stored: bool
    reason: str | None
    # When the path was first recorded, and when its current version was.
    created_at: datetime
    updated_at: datetime


@attrs.frozen(kw_only=True)
class PhaseState:
    name: str
    command: tuple[str, ...] | None = None
    timeout_s: float | None = None
    capabilities: tuple[str, ...] = ()
    env: dict[str, EnvValue] = attrs.field(factory=dict)
    prompt: str | None = None
    status: PhaseStatus = PhaseStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output_lines: int = 0
    files: tuple[FileRecord, ...] = ()
    cost_tokens: int = 0
    cost_usd: float = 0.0
    # What its processes used in its latest run, as last reported (None: nothing yet).
    resources: Resources | None = None
    exit_code: int | None = None
    error: str | None = None
    skip_reason: str | None = None

    @classmethod
    def planned(cls, spec: PhaseSpec) -> PhaseState:
        return cls(
            name=spec.name,
            command=spec.command,
            timeout_s=spec.timeout_s,
            capabilities=spec.capabilities,
            env=dict(spec.env),
            prompt=spec.prompt,
        )

    @property
    def spec(self) -> PhaseSpec:
        return PhaseSpec(
            name=self.name,
            command=self.command,
            timeout_s=self.timeout_s,
            capabilities=self.capabilities,
            env=dict(self.env),
            prompt=self.prompt,
        )


@attrs.frozen(kw_only=True)
class JobState:
    """A job folded from its events; `status is None` means it does not exist yet."""

    id: UUID | None = None
    project_id: UUID | None = None
    owner: str = ""
    status: JobStatus | None = None
    phases: tuple[PhaseState, ...] = ()
    start_phase: str | None = None
    model: str | None = None
    requested_by: str = ""
    worker_id: str | None = None
    # The fencing token of the latest lease; 0 before the first claim.
    fencing_token: int = 0
    lease_expires_at: datetime | None = None
    # The length of the current lease as granted at claim: what a renewal extends it by.
    lease_s: float = 0.0
    attempt: int = 0
    max_attempts: int = 0
    max_duration_s: float | None = None
    priority: JobPriority = JobPriority.NORMAL
    not_before: datetime | None = None
    progress: int = 0
    cost_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    pause_requested: bool = False
    # Claims that ended in a pause rather than being lost: they do not use up the attempts.
    paused_attempts: int = 0
    dead_lettered: bool = False
    # Said by `job.waiting` while queued: no online worker could claim it; cleared once it is
    # claimed, paused or over, so that a later wait is said again.
    waiting: Waiting | None = None
    # The current version of each file the job's phases reported for upload, by path.
    artifacts: dict[str, Artifact] = attrs.field(factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def running_phase(self) -> PhaseState | None:
        return next((p for p in self.phases if p.status is PhaseStatus.RUNNING), None)

    @property
    def next_phase(self) -> PhaseState | None:
        """The phase that may start next (the first pending one), if any."""
        return next((p for p in self.phases if p.status is PhaseStatus.PENDING), None)

    def phase(self, name: str) -> PhaseState | None:
        return next((p for p in self.phases if p.name == name), None)

    def stored_bytes(self, *, besides: str | None = None) -> int:
        """The size of the current stored versions of the job's files (but `besides`)."""
        return sum(a.size for a in self.artifacts.values() if a.stored and a.path != besides)


INITIAL = JobState()


def initial_state() -> JobState:
    return INITIAL


def fold(events: Iterable[Event], state: JobState = INITIAL) -> JobState:
    for event in events:
        state = evolve(state, event)
    return state


def _map_phase(
    state: JobState, name: str, change: Callable[[PhaseState], PhaseState]
) -> tuple[PhaseState, ...]:
    return tuple(change(p) if p.name == name else p for p in state.phases)


def _end_phase(
    state: JobState, name: str, at: datetime, status: PhaseStatus, **outcome: Any
) -> JobState:
    """The phase `name` finished at `at` with `status` and the outcome's fields."""
    phases = _map_phase(
        state, name, lambda p: attrs.evolve(p, status=status, finished_at=at, **outcome)
    )
    return attrs.evolve(state, phases=phases, updated_at=at)


def _with_file(phase: PhaseState, record: FileRecord) -> PhaseState:
    # A file written again replaces its earlier record, keeping its place in the list.
    if any(f.path == record.path for f in phase.files):
        files = tuple(record if f.path == record.path else f for f in phase.files)
    else:
        files = (*phase.files, record)
    return attrs.evolve(phase, files=files)


def _with_artifact(
    state: JobState, event: JobArtifactStored | JobArtifactNotStored, stored: bool
) -> JobState:
    earlier = state.artifacts.get(event.path)
    artifact = Artifact(
        path=event.path,
        phase=event.phase,
        attempt=event.attempt,
        size=event.size,
        sha256=event.sha256,
        change=None if event.change is None else event.change.value,
        stored=stored,
        reason=None if stored or isinstance(event, JobArtifactStored) else event.reason,
        created_at=earlier.created_at if earlier is not None else event.at,
        updated_at=event.at,
    )
    return attrs.evolve(
        state, artifacts={**state.artifacts, event.path: artifact}, updated_at=event.at
    )


def _reset_running(phase: PhaseState) -> PhaseState:
    # Output line numbers, files and cost of the lost attempt are kept: they happened.
    if phase.status is not PhaseStatus.RUNNING:
        return phase
    return attrs.evolve(phase, status=PhaseStatus.PENDING, started_at=None)


def _pending(phase: PhaseState) -> PhaseState:
    # To be run again: its end is undone; its output, files and cost are kept (they happened).
    return attrs.evolve(
        phase,
        status=PhaseStatus.PENDING,
        started_at=None,
        finished_at=None,
        exit_code=None,
        error=None,
        skip_reason=None,
    )


def evolve(state: JobState, event: Event) -> JobState:
    at = event.at
    match event:
        case JobQueued():
            return JobState(
                id=event.job_id,
                project_id=event.project_id,
                owner=event.owner,
                status=JobStatus.QUEUED,
                phases=tuple(PhaseState.planned(spec) for spec in event.phases),
                start_phase=event.start_phase,
                model=event.model,
                requested_by=event.requested_by,
                max_attempts=event.max_attempts,
                max_duration_s=event.max_duration_s,
                priority=event.priority,
                created_at=at,
                updated_at=at,
            )
        case JobClaimed():
            return attrs.evolve(
                state,
                worker_id=event.worker_id,
                fencing_token=event.fencing_token,
                lease_expires_at=event.lease_expires_at,
                lease_s=(event.lease_expires_at - event.at).total_seconds(),
                attempt=event.attempt,
                not_before=None,
                waiting=None,
                updated_at=at,
            )
        case JobLeaseRenewed():
            return attrs.evolve(state, lease_expires_at=event.lease_expires_at, updated_at=at)
        case JobStarted():
            return attrs.evolve(
                state,
                status=JobStatus.RUNNING,
                started_at=state.started_at or at,
                updated_at=at,
            )
        case JobPhaseStarted():
            phases = _map_phase(
                state,
                event.phase,
                lambda p: attrs.evolve(
                    p, status=PhaseStatus.RUNNING, started_at=at, finished_at=None, resources=None
                ),
            )
            return attrs.evolve(state, phases=phases, updated_at=at)
        case JobPhaseOutput():
            count = len(event.lines)
            phases = _map_phase(
                state, event.phase, lambda p: attrs.evolve(p, output_lines=p.output_lines + count)
            )
            return attrs.evolve(state, phases=phases, updated_at=at)
        case JobPhaseFile():
            change = None if event.change is None else event.change.value
            record = FileRecord(
                path=event.path, size=event.size, sha256=event.sha256, change=change
            )
            phases = _map_phase(state, event.phase, lambda p: _with_file(p, record))
            return attrs.evolve(state, phases=phases, updated_at=at)
        case JobArtifactStored():
            return _with_artifact(state, event, stored=True)
        case JobArtifactNotStored():
            return _with_artifact(state, event, stored=False)
        case JobPhaseMessage():
            return attrs.evolve(state, updated_at=at)
        case JobPhaseCost():
            tokens, usd = event.tokens, event.usd
            phases = _map_phase(
                state,
                event.phase,
                lambda p: attrs.evolve(
                    p, cost_tokens=p.cost_tokens + tokens, cost_usd=p.cost_usd + usd
                ),
            )
            return attrs.evolve(
                state,
                phases=phases,
                cost_tokens=state.cost_tokens + tokens,
                cost_usd=state.cost_usd + usd,
                updated_at=at,
            )
        case JobPhaseResources():
            resources = event.resources
            phases = _map_phase(state, event.phase, lambda p: attrs.evolve(p, resources=resources))
            return attrs.evolve(state, phases=phases, updated_at=at)
        case JobPhaseCompleted():
            return _end_phase(
                state, event.phase, at, PhaseStatus.COMPLETED, exit_code=event.exit_code
            )
        case JobPhaseFailed():
            return _end_phase(
                state,
                event.phase,
                at,
                PhaseStatus.FAILED,
                exit_code=event.exit_code,
                error=event.error,
            )
        case JobPhaseSkipped():
            return _end_phase(state, event.phase, at, PhaseStatus.SKIPPED, skip_reason=event.reason)
        case JobProgressReported():
            return attrs.evolve(state, progress=event.percent, updated_at=at)
        case JobCancelRequested():
            return attrs.evolve(
                state, cancel_requested=True, cancel_reason=event.reason, updated_at=at
            )
        case JobCancelled():
            return attrs.evolve(
                state,
                status=JobStatus.CANCELLED,
                lease_expires_at=None,
                waiting=None,
                finished_at=at,
                updated_at=at,
            )
        case JobPauseRequested():
            return attrs.evolve(state, pause_requested=True, updated_at=at)
        case JobPaused():
            return attrs.evolve(
                state,
                status=JobStatus.PAUSED,
                pause_requested=False,
                waiting=None,
                paused_attempts=state.paused_attempts + (state.worker_id is not None),
                worker_id=None,
                lease_expires_at=None,
                not_before=None,
                phases=tuple(_reset_running(p) for p in state.phases),
                updated_at=at,
            )
        case JobResumed():
            status = JobStatus.QUEUED if state.status is JobStatus.PAUSED else state.status
            return attrs.evolve(state, status=status, pause_requested=False, updated_at=at)
        case JobStuck():
            return attrs.evolve(state, worker_id=None, lease_expires_at=None, updated_at=at)
        case JobWaiting():
            waiting = Waiting(reason=event.reason, capabilities=tuple(event.capabilities))
            return attrs.evolve(state, waiting=waiting, updated_at=at)
        # A pause asked of the attempt that ended goes with it: the job is queued again.
        case JobRetryScheduled():
            return attrs.evolve(
                state,
                status=JobStatus.QUEUED,
                pause_requested=False,
                not_before=event.not_before,
                phases=tuple(_reset_running(p) for p in state.phases),
                updated_at=at,
            )
        case JobRequeued():
            undone = frozenset(event.phases)
            return attrs.evolve(
                state,
                status=JobStatus.QUEUED,
                pause_requested=False,
                max_attempts=event.max_attempts,
                dead_lettered=False,
                error=None,
                not_before=None,
                worker_id=None,
                lease_expires_at=None,
                waiting=None,
                finished_at=None,
                phases=tuple(_pending(p) if p.name in undone else p for p in state.phases),
                updated_at=at,
            )
        case JobCompleted():
            return attrs.evolve(
                state,
                status=JobStatus.COMPLETED,
                progress=100,
                lease_expires_at=None,
                waiting=None,
                finished_at=at,
                updated_at=at,
            )
        case JobFailed():
            return attrs.evolve(
                state,
                status=JobStatus.FAILED,
                error=event.error,
                dead_lettered=event.dead_lettered,
                lease_expires_at=None,
                waiting=None,
                finished_at=at,
                updated_at=at,
            )
        case _:
            assert_never(event)
