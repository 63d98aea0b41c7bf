"""The job aggregate as a decider: `decide(state, command) -> events` (its state and `evolve`
are in `helix.domain.job.state`).

    queued ──ClaimJob──▶ running ──CompleteJob──▶ completed
       ▲                    │ ────FailJob─────▶ failed
       └─ExpireLease (retry)┤ ─ExpireLease (attempts used up)─▶ failed, dead-lettered
                            └─RequestCancel … AcknowledgeCancel─▶ cancelled
    queued | running ──PauseJob (… AcknowledgePause)──▶ paused ──ResumeJob──▶ queued

Rules worth knowing:

- `start_phase`: the phases before it are skipped at queue time with explicit
  `job.phase_skipped` events, so readers never need to know the rule.
- Phases run strictly in plan order, one at a time; output, files and cost are accepted only
  for the running phase. Completing the last phase does not complete the job: the worker
  reports that, and it is refused while any phase is pending, running or failed.
- Leases and fencing: every claim increments the fencing token; a worker report under any
  other token, on a job that holds no lease, or at/after the lease's expiry is refused, so a
  worker that lost its lease can never change the job again.
- A job that ends other than by completing closes its open phases with explicit events (the
  running phase fails, pending ones are skipped), so a terminal job has no open phase.
- Terminal states are final. RequestCancel is idempotent: on a terminal job, or once already
  requested, it returns no events. A queued job is cancelled at once; a running one when its
  worker acknowledges, reports an end, or loses its lease.
- Pause: a queued job, or a running one between phases, pauses at once; with a phase running
  the pause is requested, no further phase may start, and the worker acknowledges it once the
  phase ended (or its lease runs out). `now` pauses at once, the running phase back to pending.
  A paused job holds no lease (its worker's reports are refused as stale), is not claimable,
  and is cancelled at once; ResumeJob queues it again, or withdraws a pause still requested.
  Claims that ended in a pause do not count against `max_attempts`.
- A lost lease (ExpireLease) marks the job stuck and queues it again after a backoff, with the
  running phase back to pending, until `max_attempts` claims were made; then the job fails
  dead-lettered. A job whose phase already failed is failed instead of retried.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NoReturn, assert_never
from uuid import UUID

import attrs

from helix.domain.job.commands import (
    AcknowledgeCancel,
    AcknowledgePause,
    ClaimJob,
    Command,
    CompleteJob,
    CompletePhase,
    EnforceDurationLimit,
    ExpireLease,
    FailJob,
    FailPhase,
    MarkWaiting,
    PauseJob,
    QueueJob,
    RecordArtifactNotStored,
    RecordCost,
    RecordFile,
    RecordMessage,
    RecordOutput,
    RecordResources,
    RenewLease,
    ReportProgress,
    RequestCancel,
    RequeueJob,
    ResumeJob,
    SkipPhase,
    StartPhase,
    StoreArtifact,
    WorkerReport,
)
from helix.domain.job.events import (
    DURATION_LIMIT,
    TERMINAL,
    Event,
    FileChange,
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
    JobProgressReported,
    JobQueued,
    JobRequeued,
    JobResult,
    JobResumed,
    JobRetryScheduled,
    JobStarted,
    JobStatus,
    JobStuck,
    JobWaiting,
    OutputStream,
    PhaseStatus,
)
from helix.domain.job.state import JobState, PhaseState
from helix.domain.job.waiting import Need
from helix.domain.project.decider import (
    MAX_AUTHOR_CHARS,
    MAX_REASON_CHARS,
    SHELL_CAPABILITY,
    as_utc,
    check_duration,
    check_text,
    normalise_phases,
)
from helix.domain.project.events import PhaseSpec
from helix.errors import InvalidTransition, PayloadTooLarge, ValidationError

RETRY_BASE_S = 5.0
RETRY_CAP_S = 300.0
MAX_ATTEMPTS_LIMIT = 100
MAX_LEASE_S = 3600.0
MAX_LINES_PER_BATCH = 1_000
MAX_LINE_CHARS = 16_384
MAX_STDERR_TAIL_LINES = 200
MAX_ERROR_CHARS = 10_000
MAX_PATH_CHARS = 4_096
MAX_MODEL_CHARS = 200
MAX_PERCENT = 100
# An agent's message to the discussion: one line of its output at most.
MAX_AGENT_MESSAGE_CHARS = 4_000
SHA256_PATTERN = "^[0-9a-fA-F]{64}$"
# The job's cost totals are kept in a bigint and a float8: a report that would overflow them
# is refused rather than failing the write.
MAX_COST_TOKENS = 2**63 - 1
# A phase's resource figures are kept in bigints and a float8 (CPU seconds: a century of one
# core would be 3.2e9).
MAX_RESOURCE_BYTES = 2**63 - 1
MAX_CPU_S = 1e12

_DONE = frozenset({PhaseStatus.COMPLETED, PhaseStatus.SKIPPED})
_UNLEASED = frozenset({JobStatus.QUEUED, JobStatus.PAUSED})
_TO_RUN = frozenset({PhaseStatus.PENDING, PhaseStatus.RUNNING})
_SHA256 = re.compile(SHA256_PATTERN)


def check_artifact_path(path: str) -> str:
    """A stored file's path: relative to the workspace, '/'-separated, with no empty, `.` or
    `..` part and no NUL, as the worker reports it; the key its download is found by."""
    check_text(path, "path", max_chars=MAX_PATH_CHARS)
    parts = path.split("/")
    if "\x00" in path or any(part in ("", ".", "..") for part in parts):
        raise ValidationError(
            "path must be relative, with no empty, '.' or '..' part and no NUL", field="path"
        )
    return path


def _check_sha256(value: str) -> str:
    sha256 = value.lower()
    if not _SHA256.fullmatch(sha256):
        raise ValidationError("sha256 must be 64 hexadecimal digits", field="sha256")
    return sha256


def _check_change(value: FileChange | None) -> FileChange | None:
    if value is None:
        return None
    try:
        return FileChange(value)
    except ValueError:
        raise ValidationError("change must be created or modified", field="change") from None


def backoff(attempt: int, *, base: float = RETRY_BASE_S, cap: float = RETRY_CAP_S) -> float:
    """Seconds to wait before the next claim after attempt number `attempt` (1-based) was lost."""
    return min(base * 2.0 ** min(max(attempt - 1, 0), 64), cap)


def needs(phases: Iterable[PhaseState | PhaseSpec]) -> list[Need]:
    """What each phase still to run needs: its capabilities (`shell` for a command that names
    none), and whether it has a command. A PhaseSpec always still has to run; a PhaseState
    only while pending or running."""
    found = []
    for phase in phases:
        if isinstance(phase, PhaseState) and phase.status not in _TO_RUN:
            continue
        caps = phase.capabilities
        if not caps and phase.command is not None:
            caps = (SHELL_CAPABILITY,)
        found.append(Need(capabilities=tuple(caps), has_command=phase.command is not None))
    return found


def missing_capabilities(
    worker_caps: Iterable[str], phases: Iterable[PhaseState | PhaseSpec]
) -> frozenset[str]:
    """The capabilities still-to-run phases need that the worker does not offer."""
    needed = {c for need in needs(phases) for c in need.capabilities}
    return frozenset(needed - frozenset(worker_caps))


def phase_capabilities_cover(
    worker_caps: Iterable[str], phases: Iterable[PhaseState | PhaseSpec]
) -> bool:
    """Whether a worker offering `worker_caps` may claim a job with these phases."""
    return not missing_capabilities(worker_caps, phases)


# --- decide ---------------------------------------------------------------------------------


def _refuse(state: JobState, message: str, reason: str, **details: Any) -> NoReturn:
    current = state.status.value if state.status is not None else None
    raise InvalidTransition(message, current=current, reason=reason, **details)


def decide(state: JobState, command: Command) -> list[Event]:
    """The events that `command` causes, or InvalidTransition / ValidationError."""
    if isinstance(command, QueueJob):
        return _queue(state, command)
    status = state.status
    if status is None:
        _refuse(state, "job does not exist", "not_found")
    at = as_utc(command.at)
    if isinstance(command, RequestCancel):
        return _request_cancel(state, status, command, at)
    if isinstance(command, MarkWaiting):
        return _mark_waiting(state, status, command, at)
    if isinstance(command, RequeueJob):
        return _requeue(state, status, command, at)
    if status in TERMINAL:
        _refuse(state, f"job is {status.value}", "terminal")
    match command:
        case ClaimJob():
            return _claim(state, status, command, at)
        case ExpireLease():
            return _expire(state, status, command, at)
        case PauseJob():
            return _pause(state, status, command, at)
        case ResumeJob():
            check_text(command.by, "by", max_chars=MAX_AUTHOR_CHARS)
            if status is JobStatus.PAUSED or state.pause_requested:
                return [JobResumed(job_id=_id(state), by=command.by, at=at)]
            return []
        case EnforceDurationLimit():
            return _enforce_duration(state, status, command, at)
        case _:
            _check_lease(state, status, command.fencing_token, at)
            return _report(state, command, at)


def _id(state: JobState) -> UUID:
    assert state.id is not None
    return state.id


def _requeue(state: JobState, status: JobStatus, command: RequeueJob, at: datetime) -> list[Event]:
    by = check_text(command.by, "by", max_chars=MAX_AUTHOR_CHARS)
    if command.max_attempts < 1:
        raise ValidationError("max_attempts must be at least 1", field="max_attempts")
    if status is not JobStatus.FAILED:
        _refuse(state, f"a {status.value} job cannot be requeued; only a failed one", "not_failed")
    # What its failure left undone: the phase that failed, and those skipped as the job failed
    # (they ended with it); phases that completed, or were skipped before, stay as they are.
    undone = tuple(
        p.name
        for p in state.phases
        if p.status is PhaseStatus.FAILED
        or (p.status is PhaseStatus.SKIPPED and p.finished_at == state.finished_at)
    )
    if not undone:
        _refuse(state, "the failed job has no phase left to run", "no_phase_to_run")
    used = state.attempt - state.paused_attempts
    return [
        JobRequeued(
            job_id=_id(state),
            by=by,
            phases=undone,
            max_attempts=used + command.max_attempts,
            at=at,
        )
    ]


def _mark_waiting(
    state: JobState, status: JobStatus, command: MarkWaiting, at: datetime
) -> list[Event]:
    # Idempotent, not refused: reapers on several nodes may say it at once, and a job claimed
    # meanwhile simply needs no word.
    if status is not JobStatus.QUEUED or state.cancel_requested or state.waiting is not None:
        return []
    reason = check_text(command.reason, "reason", max_chars=MAX_ERROR_CHARS)
    capabilities = tuple(
        check_text(c, "capabilities", max_chars=MAX_ERROR_CHARS) for c in command.capabilities
    )
    return [JobWaiting(job_id=_id(state), reason=reason, capabilities=capabilities, at=at)]


def _queue(state: JobState, command: QueueJob) -> list[Event]:
    if state.exists:
        _refuse(state, "job already exists", "already_exists")
    at = as_utc(command.at)
    check_text(command.owner, "owner", max_chars=MAX_AUTHOR_CHARS)
    check_text(command.requested_by, "requested_by", max_chars=MAX_AUTHOR_CHARS)
    if command.model is not None:
        check_text(command.model, "model", max_chars=MAX_MODEL_CHARS)
    if not 1 <= command.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValidationError(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}", field="max_attempts"
        )
    check_duration(command.max_duration_s, "max_duration_s")
    phases = normalise_phases(command.phases)
    if not phases:
        raise ValidationError("a job needs at least one phase", field="phases")
    names = [phase.name for phase in phases]
    if command.start_phase is not None and command.start_phase not in names:
        raise ValidationError(
            f"start phase {command.start_phase!r} is not in the plan", field="start_phase"
        )
    events: list[Event] = [
        JobQueued(
            job_id=command.job_id,
            project_id=command.project_id,
            owner=command.owner,
            phases=phases,
            start_phase=command.start_phase,
            model=command.model,
            requested_by=command.requested_by,
            max_attempts=command.max_attempts,
            max_duration_s=command.max_duration_s,
            priority=command.priority,
            at=at,
        )
    ]
    if command.start_phase is not None:
        reason = f"before start phase {command.start_phase!r}"
        for name in names[: names.index(command.start_phase)]:
            events.append(JobPhaseSkipped(job_id=command.job_id, phase=name, reason=reason, at=at))
    return events


def overran(state: JobState, at: datetime) -> bool:
    """Whether the job is running past its duration limit at `at`."""
    if state.status is not JobStatus.RUNNING or state.max_duration_s is None:
        return False
    started = state.started_at
    return started is not None and at >= started + timedelta(seconds=state.max_duration_s)


def _enforce_duration(
    state: JobState, status: JobStatus, command: EnforceDurationLimit, at: datetime
) -> list[Event]:
    if command.fencing_token is not None and command.fencing_token != state.fencing_token:
        _refuse(state, "the fencing token is not the job's current lease", "stale_fencing_token")
    if not overran(state, at):
        _refuse(
            state,
            "the job is not running past its duration limit",
            "within_duration_limit",
            max_duration_s=state.max_duration_s,
        )
    error = f"the job ran past its duration limit of {state.max_duration_s:g} s"
    if state.cancel_requested:
        return _cancel_now(state, at)
    return [
        *_close_phases(state, error, at),
        _failed(state, error, at, reason=DURATION_LIMIT),
    ]


def _duration(state: JobState, at: datetime) -> float | None:
    began = state.started_at or state.created_at
    return None if began is None else max(0.0, (at - began).total_seconds())


def _result(state: JobState) -> JobResult:
    return JobResult(
        phases_completed=sum(p.status is PhaseStatus.COMPLETED for p in state.phases),
        phases=len(state.phases),
        files=sum(a.stored for a in state.artifacts.values()),
        cost_tokens=state.cost_tokens,
        cost_usd=state.cost_usd,
    )


def _failed(
    state: JobState,
    error: str,
    at: datetime,
    *,
    dead_lettered: bool = False,
    reason: str | None = None,
) -> JobFailed:
    """The job's failure, with how long it ran and what it came to (its state before it)."""
    return JobFailed(
        job_id=_id(state),
        error=error,
        dead_lettered=dead_lettered,
        reason=reason,
        duration_s=_duration(state, at),
        result=_result(state),
        at=at,
    )


def _check_lease_s(lease_s: float) -> None:
    if not (math.isfinite(lease_s) and 0 < lease_s <= MAX_LEASE_S):
        raise ValidationError(
            f"lease_s must be between 0 and {MAX_LEASE_S} seconds", field="lease_s"
        )


def _claim(state: JobState, status: JobStatus, command: ClaimJob, at: datetime) -> list[Event]:
    if status is not JobStatus.QUEUED:
        _refuse(state, f"a {status.value} job cannot be claimed", "not_queued")
    check_text(command.worker_id, "worker_id", max_chars=MAX_AUTHOR_CHARS)
    _check_lease_s(command.lease_s)
    if state.not_before is not None and at < state.not_before:
        _refuse(
            state,
            "the job's retry is not due yet",
            "retry_not_due",
            not_before=state.not_before.isoformat(),
        )
    if command.capabilities is not None:
        missing = missing_capabilities(command.capabilities, state.phases)
        if missing:
            _refuse(
                state,
                "the worker lacks capabilities the job needs",
                "capabilities_not_covered",
                missing=sorted(missing),
            )
    attempt = state.attempt + 1
    return [
        JobClaimed(
            job_id=_id(state),
            worker_id=command.worker_id,
            fencing_token=state.fencing_token + 1,
            lease_expires_at=at + timedelta(seconds=command.lease_s),
            attempt=attempt,
            at=at,
        ),
        JobStarted(job_id=_id(state), worker_id=command.worker_id, attempt=attempt, at=at),
    ]


def _check_lease(state: JobState, status: JobStatus, fencing_token: int, at: datetime) -> None:
    # Fencing: only the holder of the live lease may report. A queued job holds no lease, so
    # any token presented to it belongs to a lease that was taken away.
    if status in _UNLEASED or fencing_token != state.fencing_token:
        _refuse(state, "the fencing token is not the job's current lease", "stale_fencing_token")
    if state.lease_expires_at is not None and at >= state.lease_expires_at:
        _refuse(
            state,
            "the lease has expired",
            "lease_expired",
            lease_expires_at=state.lease_expires_at.isoformat(),
        )


def _expire(state: JobState, status: JobStatus, command: ExpireLease, at: datetime) -> list[Event]:
    if status in _UNLEASED:
        _refuse(state, f"a {status.value} job holds no lease", "no_lease")
    if command.handed_back and command.fencing_token is None:
        raise ValidationError("a job is handed back under its fencing token", field="fencing_token")
    if command.fencing_token is not None and command.fencing_token != state.fencing_token:
        _refuse(state, "the fencing token is not the job's current lease", "stale_fencing_token")
    expires = state.lease_expires_at
    if not command.handed_back and (expires is None or at < expires):
        _refuse(
            state,
            "the lease has not expired",
            "lease_not_expired",
            lease_expires_at=expires.isoformat() if expires else None,
        )
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS)
    job_id = _id(state)
    events: list[Event] = [
        JobStuck(
            job_id=job_id,
            worker_id=state.worker_id,
            fencing_token=state.fencing_token,
            reason=reason,
            at=at,
        )
    ]
    failed = next((p for p in state.phases if p.status is PhaseStatus.FAILED), None)
    if state.cancel_requested:
        events += _cancel_now(state, at)
    elif failed is not None:
        error = f"phase {failed.name!r} failed: {failed.error}"
        events += [*_close_phases(state, error, at), _failed(state, error, at)]
    elif state.pause_requested:
        running = state.running_phase
        events.append(
            JobPaused(
                job_id=job_id,
                reason=f"paused; {reason}",
                stopped_phase=None if running is None else running.name,
                at=at,
            )
        )
    elif state.attempt - state.paused_attempts < state.max_attempts:
        delay = backoff(
            state.attempt,
            base=RETRY_BASE_S if command.retry_base_s is None else command.retry_base_s,
            cap=RETRY_CAP_S if command.retry_cap_s is None else command.retry_cap_s,
        )
        not_before = at + timedelta(seconds=delay)
        events.append(
            JobRetryScheduled(
                job_id=job_id, attempt=state.attempt + 1, not_before=not_before, at=at
            )
        )
    else:
        error = f"{reason}; gave up after {state.attempt} of {state.max_attempts} attempts"
        events += [
            *_close_phases(state, error, at),
            _failed(state, error, at, dead_lettered=True),
        ]
    return events


def _pause(state: JobState, status: JobStatus, command: PauseJob, at: datetime) -> list[Event]:
    check_text(command.by, "by", max_chars=MAX_AUTHOR_CHARS)
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    reason = reason or "paused"
    failed = any(p.status is PhaseStatus.FAILED for p in state.phases)
    # Paused already, or about to end (cancelled, or failing once its worker says so).
    if status is JobStatus.PAUSED or state.cancel_requested or failed:
        return []
    running = state.running_phase
    if running is None or command.now:
        stopped = None if running is None else running.name
        return [JobPaused(job_id=_id(state), reason=reason, stopped_phase=stopped, at=at)]
    if state.pause_requested:
        return []
    return [JobPauseRequested(job_id=_id(state), by=command.by, reason=reason, at=at)]


def _request_cancel(
    state: JobState, status: JobStatus, command: RequestCancel, at: datetime
) -> list[Event]:
    check_text(command.by, "by", max_chars=MAX_AUTHOR_CHARS)
    reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS, required=False)
    if status in TERMINAL or state.cancel_requested:
        return []
    requested = JobCancelRequested(
        job_id=_id(state), by=command.by, reason=reason or "cancelled by request", at=at
    )
    if status is JobStatus.RUNNING:
        return [requested]
    # Nobody holds a queued job, so there is nobody to wait for.
    return [requested, *_cancel_now(attrs.evolve(state, cancel_reason=requested.reason), at)]


def _cancel_now(state: JobState, at: datetime) -> list[Event]:
    reason = state.cancel_reason or "cancelled by request"
    return [
        *_close_phases(state, "job cancelled", at),
        JobCancelled(job_id=_id(state), reason=reason, at=at),
    ]


def _close_phases(state: JobState, reason: str, at: datetime) -> list[Event]:
    """Events that leave no phase open when the job ends without completing."""
    events: list[Event] = []
    for phase in state.phases:
        if phase.status is PhaseStatus.RUNNING:
            events.append(
                JobPhaseFailed(
                    job_id=_id(state), phase=phase.name, exit_code=None, error=reason, at=at
                )
            )
        elif phase.status is PhaseStatus.PENDING:
            events.append(
                JobPhaseSkipped(job_id=_id(state), phase=phase.name, reason=reason, at=at)
            )
    return events


def _known_phase(state: JobState, name: str) -> PhaseState:
    phase = state.phase(name)
    if phase is None:
        raise ValidationError(f"phase {name!r} is not in the job's plan", field="phase")
    return phase


def _check_next_phase(state: JobState, name: str) -> None:
    _known_phase(state, name)
    if state.cancel_requested:
        _refuse(state, "cancellation was requested; acknowledge it", "cancel_requested")
    if state.pause_requested:
        _refuse(state, "a pause was requested; acknowledge it", "pause_requested")
    for phase in state.phases:
        if phase.status is PhaseStatus.RUNNING:
            _refuse(state, f"phase {phase.name!r} is still running", "phase_running", phase=name)
        if phase.status is PhaseStatus.FAILED:
            _refuse(state, f"phase {phase.name!r} failed", "phase_failed", phase=name)
    upcoming = state.next_phase
    if upcoming is None or upcoming.name != name:
        _refuse(
            state,
            f"phase {name!r} is not the next phase of the plan",
            "phase_out_of_order",
            phase=name,
            expected=upcoming.name if upcoming else None,
        )


def _check_running_phase(state: JobState, name: str) -> None:
    phase = _known_phase(state, name)
    if phase.status is not PhaseStatus.RUNNING:
        _refuse(
            state,
            f"phase {name!r} is {phase.status.value}, not running",
            "phase_not_running",
            phase=name,
            phase_status=phase.status.value,
        )


def _check_lines(lines: tuple[str, ...], field: str, max_lines: int) -> None:
    if len(lines) > max_lines:
        raise ValidationError(f"{field} has more than {max_lines} lines", field=field)
    if any(len(line) > MAX_LINE_CHARS for line in lines):
        raise ValidationError(
            f"{field} has a line longer than {MAX_LINE_CHARS} characters", field=field
        )


def _report(state: JobState, command: WorkerReport, at: datetime) -> list[Event]:
    job_id = _id(state)
    match command:
        case RenewLease():
            _check_lease_s(command.lease_s)
            expires = at + timedelta(seconds=command.lease_s)
            return [
                JobLeaseRenewed(
                    job_id=job_id,
                    fencing_token=state.fencing_token,
                    lease_expires_at=expires,
                    at=at,
                )
            ]
        case StartPhase():
            _check_next_phase(state, command.phase)
            return [JobPhaseStarted(job_id=job_id, phase=command.phase, at=at)]
        case SkipPhase():
            reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS)
            _check_next_phase(state, command.phase)
            return [JobPhaseSkipped(job_id=job_id, phase=command.phase, reason=reason, at=at)]
        case RecordOutput():
            _check_running_phase(state, command.phase)
            stream = _output_stream(command.stream)
            if not command.lines:
                raise ValidationError("an output batch needs at least one line", field="lines")
            _check_lines(command.lines, "lines", MAX_LINES_PER_BATCH)
            phase = _known_phase(state, command.phase)
            return [
                JobPhaseOutput(
                    job_id=job_id,
                    phase=command.phase,
                    stream=stream,
                    lines=command.lines,
                    first_line_no=phase.output_lines + 1,
                    attempt=state.attempt,
                    at=at,
                )
            ]
        case RecordFile():
            _check_running_phase(state, command.phase)
            check_text(command.path, "path", max_chars=MAX_PATH_CHARS)
            if "\x00" in command.path:
                raise ValidationError("path must not contain NUL", field="path")
            if command.size < 0:
                raise ValidationError("size must not be negative", field="size")
            return [
                JobPhaseFile(
                    job_id=job_id,
                    phase=command.phase,
                    path=command.path,
                    size=command.size,
                    sha256=_check_sha256(command.sha256),
                    change=_check_change(command.change),
                    at=at,
                )
            ]
        case StoreArtifact():
            _check_running_phase(state, command.phase)
            path = check_artifact_path(command.path)
            _check_artifact_size(
                state, path, command.size, command.max_bytes, command.job_max_bytes
            )
            return [
                JobArtifactStored(
                    job_id=job_id,
                    phase=command.phase,
                    path=path,
                    size=command.size,
                    sha256=_check_sha256(command.sha256),
                    change=_check_change(command.change),
                    attempt=state.attempt,
                    at=at,
                )
            ]
        case RecordArtifactNotStored():
            _check_running_phase(state, command.phase)
            path = check_artifact_path(command.path)
            if command.size < 0:
                raise ValidationError("size must not be negative", field="size")
            reason = check_text(command.reason, "reason", max_chars=MAX_REASON_CHARS)
            return [
                JobArtifactNotStored(
                    job_id=job_id,
                    phase=command.phase,
                    path=path,
                    size=command.size,
                    sha256=None if command.sha256 is None else _check_sha256(command.sha256),
                    change=_check_change(command.change),
                    attempt=state.attempt,
                    reason=reason,
                    at=at,
                )
            ]
        case RecordMessage():
            _check_running_phase(state, command.phase)
            content = check_text(command.content, "content", max_chars=MAX_AGENT_MESSAGE_CHARS)
            return [JobPhaseMessage(job_id=job_id, phase=command.phase, content=content, at=at)]
        case RecordCost():
            _check_running_phase(state, command.phase)
            if command.tokens < 0:
                raise ValidationError("tokens must not be negative", field="tokens")
            if not (math.isfinite(command.usd) and command.usd >= 0):
                raise ValidationError("usd must be a non-negative number", field="usd")
            if state.cost_tokens + command.tokens > MAX_COST_TOKENS:
                raise ValidationError(
                    f"the job's tokens would exceed {MAX_COST_TOKENS}", field="tokens"
                )
            if not math.isfinite(state.cost_usd + command.usd):
                raise ValidationError("the job's cost in usd would overflow", field="usd")
            return [
                JobPhaseCost(
                    job_id=job_id,
                    phase=command.phase,
                    tokens=command.tokens,
                    usd=float(command.usd),
                    at=at,
                )
            ]
        case RecordResources():
            _check_running_phase(state, command.phase)
            used = command.used
            if not (math.isfinite(used.cpu_s) and 0 <= used.cpu_s <= MAX_CPU_S):
                raise ValidationError(
                    f"cpu_s must be a number from 0 to {MAX_CPU_S:g}", field="cpu_s"
                )
            for name in ("max_rss_bytes", "read_bytes", "write_bytes"):
                if not 0 <= getattr(used, name) <= MAX_RESOURCE_BYTES:
                    raise ValidationError(
                        f"{name} must be a whole number from 0 to {MAX_RESOURCE_BYTES}",
                        field=name,
                    )
            return [JobPhaseResources.of(job_id, command.phase, used, at)]
        case ReportProgress():
            if not 0 <= command.percent <= MAX_PERCENT:
                raise ValidationError(
                    f"percent must be between 0 and {MAX_PERCENT}", field="percent"
                )
            return [JobProgressReported(job_id=job_id, percent=command.percent, at=at)]
        case CompletePhase():
            _check_running_phase(state, command.phase)
            if command.exit_code not in (0, None):
                raise ValidationError(
                    "a phase that exited non-zero failed; report FailPhase", field="exit_code"
                )
            return [
                JobPhaseCompleted(
                    job_id=job_id, phase=command.phase, exit_code=command.exit_code, at=at
                )
            ]
        case FailPhase():
            _check_running_phase(state, command.phase)
            error = check_text(command.error, "error", max_chars=MAX_ERROR_CHARS)
            _check_lines(command.stderr_tail, "stderr_tail", MAX_STDERR_TAIL_LINES)
            return [
                JobPhaseFailed(
                    job_id=job_id,
                    phase=command.phase,
                    exit_code=command.exit_code,
                    error=error,
                    stderr_tail=command.stderr_tail,
                    at=at,
                )
            ]
        case CompleteJob():
            if state.cancel_requested:
                return _cancel_now(state, at)
            unfinished = [p.name for p in state.phases if p.status not in _DONE]
            if unfinished:
                _refuse(
                    state,
                    "the job has phases that did not complete",
                    "phases_unfinished",
                    phases=unfinished,
                )
            return [
                JobCompleted(
                    job_id=job_id, duration_s=_duration(state, at), result=_result(state), at=at
                )
            ]
        case FailJob():
            error = check_text(command.error, "error", max_chars=MAX_ERROR_CHARS)
            if state.cancel_requested:
                return _cancel_now(state, at)
            return [*_close_phases(state, error, at), _failed(state, error, at)]
        case AcknowledgeCancel():
            if not state.cancel_requested:
                _refuse(state, "no cancellation was requested", "cancel_not_requested")
            return _cancel_now(state, at)
        case AcknowledgePause():
            if not state.pause_requested:
                _refuse(state, "no pause was requested", "pause_not_requested")
            for phase in state.phases:
                if phase.status is PhaseStatus.RUNNING:
                    _refuse(state, f"phase {phase.name!r} is still running", "phase_running")
                if phase.status is PhaseStatus.FAILED:
                    _refuse(state, f"phase {phase.name!r} failed; fail the job", "phase_failed")
            return [JobPaused(job_id=job_id, reason="paused before the next phase", at=at)]
        case _:
            assert_never(command)


def _check_artifact_size(
    state: JobState, path: str, size: int, max_bytes: int | None, job_max_bytes: int | None
) -> None:
    """Refuses a file over the limit per file, or one whose storing would take the job's
    current versions over the limit per job (the version it replaces does not count)."""
    if size < 0:
        raise ValidationError("size must not be negative", field="size")
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(
            f"the file is {size} bytes, more than the {max_bytes} bytes a file may have",
            field="size",
            max_bytes=max_bytes,
        )
    if job_max_bytes is not None:
        stored = state.stored_bytes(besides=path)
        if stored + size > job_max_bytes:
            raise PayloadTooLarge(
                f"the job's stored files would take {stored + size} bytes, more than the "
                f"{job_max_bytes} bytes a job may store",
                field="size",
                job_max_bytes=job_max_bytes,
                stored_bytes=stored,
            )


def _output_stream(value: OutputStream) -> OutputStream:
    try:
        return OutputStream(value)
    except ValueError:
        raise ValidationError("stream must be stdout or stderr", field="stream") from None
