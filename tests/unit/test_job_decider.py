"""The job decider, without a database: each command's effect and each refusal."""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import attrs
import pytest

from helix.domain.job import (
    EVENTS,
    AcknowledgeCancel,
    ClaimJob,
    Command,
    CompleteJob,
    CompletePhase,
    Event,
    ExpireLease,
    FailJob,
    FailPhase,
    FileRecord,
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobCompleted,
    JobFailed,
    JobLeaseRenewed,
    JobPhaseCompleted,
    JobPhaseCost,
    JobPhaseFailed,
    JobPhaseFile,
    JobPhaseOutput,
    JobPhaseResources,
    JobPhaseSkipped,
    JobPhaseStarted,
    JobProgressReported,
    JobQueued,
    JobRequeued,
    JobResult,
    JobRetryScheduled,
    JobStarted,
    JobState,
    JobStatus,
    JobStuck,
    OutputStream,
    PauseJob,
    PhaseState,
    PhaseStatus,
    QueueJob,
    RecordCost,
    RecordFile,
    RecordOutput,
    RecordResources,
    RenewLease,
    ReportProgress,
    RequestCancel,
    RequeueJob,
    Resources,
    SkipPhase,
    StartPhase,
    WorkerReport,
    backoff,
    decide,
    fold,
    initial_state,
    missing_capabilities,
    phase_capabilities_cover,
)
from helix.domain.project import PhaseSpec
from helix.errors import InvalidTransition, ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
JOB_ID = UUID("00000000-0000-4000-8000-0000000000b1")
PROJECT_ID = UUID("00000000-0000-4000-8000-000000000001")
PLAN = (
    PhaseSpec(name="plan", capabilities=("llm",)),
    PhaseSpec(name="build", command=("make",), timeout_s=60.0),
    PhaseSpec(name="test", command=("pytest",)),
)
LEASE_S = 30.0
SHA = "ab" * 32


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queue(**changes: typing.Any) -> QueueJob:
    fields: dict[str, typing.Any] = {
        "job_id": JOB_ID,
        "project_id": PROJECT_ID,
        "owner": "alice",
        "phases": PLAN,
        "requested_by": "alice",
        "model": "claude-opus-4",
        "at": at(),
    }
    fields.update(changes)
    return QueueJob(**fields)


def given(*commands: Command, state: JobState | None = None) -> JobState:
    state = initial_state() if state is None else state
    for command in commands:
        state = fold(decide(state, command), state)
    return state


def queued(**changes: typing.Any) -> JobState:
    return given(queue(**changes))


def claimed(token: int = 1, t: float = 1) -> JobState:
    """A running job claimed by worker w1 at `t`, its lease running until t + LEASE_S."""
    return given(ClaimJob(worker_id="w1", lease_s=LEASE_S, at=at(t)), state=queued())


def in_phase(name: str = "plan") -> JobState:
    """A claimed job whose phases before `name` completed and `name` is running."""
    state = claimed()
    for phase in PLAN:
        state = given(StartPhase(fencing_token=1, phase=phase.name, at=at(2)), state=state)
        if phase.name == name:
            return state
        state = given(CompletePhase(fencing_token=1, phase=phase.name, at=at(2)), state=state)
    raise AssertionError(name)


def all_done() -> JobState:
    return given(CompletePhase(fencing_token=1, phase="test", at=at(3)), state=in_phase("test"))


def completed() -> JobState:
    return given(CompleteJob(fencing_token=1, at=at(4)), state=all_done())


def failed() -> JobState:
    return given(FailJob(fencing_token=1, error="boom", at=at(4)), state=in_phase("build"))


def cancelled() -> JobState:
    return given(RequestCancel(by="alice", at=at(1)), state=queued())


def refused(state: JobState, command: Command) -> InvalidTransition:
    with pytest.raises(InvalidTransition) as info:
        decide(state, command)
    expected = state.status.value if state.status is not None else None
    assert info.value.details["current_state"] == expected
    return info.value


def statuses(state: JobState) -> list[PhaseStatus]:
    return [p.status for p in state.phases]


def phase(state: JobState, name: str) -> PhaseState:
    found = state.phase(name)
    assert found is not None
    return found


# --- queueing -----------------------------------------------------------------------------------


def test_queueing_a_job_snapshots_the_plan() -> None:
    events = decide(initial_state(), queue(max_attempts=5))

    [event] = events
    assert isinstance(event, JobQueued)
    assert [p.name for p in event.phases] == ["plan", "build", "test"]
    assert event.phases[1].capabilities == ("shell",)
    assert (event.model, event.requested_by, event.max_attempts) == ("claude-opus-4", "alice", 5)
    state = fold(events)
    assert state.status is JobStatus.QUEUED
    assert statuses(state) == [PhaseStatus.PENDING] * 3
    assert (state.attempt, state.fencing_token, state.progress) == (0, 0, 0)
    assert state.phases[1].timeout_s == 60.0
    assert state.created_at == T0


def test_phases_before_the_start_phase_are_skipped_when_the_job_is_queued() -> None:
    events = decide(initial_state(), queue(start_phase="test"))

    assert [type(e) for e in events] == [JobQueued, JobPhaseSkipped, JobPhaseSkipped]
    state = fold(events)
    assert statuses(state) == [PhaseStatus.SKIPPED, PhaseStatus.SKIPPED, PhaseStatus.PENDING]
    assert state.start_phase == "test"
    assert state.next_phase is not None and state.next_phase.name == "test"


@pytest.mark.parametrize(
    "changes",
    [
        {"start_phase": "deploy"},
        {"phases": ()},
        {"phases": (PhaseSpec(name="a"), PhaseSpec(name="a"))},
        {"max_attempts": 0},
        {"max_attempts": 101},
        {"requested_by": ""},
        {"model": ""},
        {"at": datetime(2024, 5, 1)},
    ],
    ids=[
        "unknown-start",
        "no-phases",
        "duplicate",
        "no-attempts",
        "too-many-attempts",
        "no-requester",
        "empty-model",
        "naive-time",
    ],
)
def test_an_invalid_job_is_refused(changes: dict[str, typing.Any]) -> None:
    with pytest.raises(ValidationError):
        decide(initial_state(), queue(**changes))


def test_queueing_a_job_that_exists_is_refused() -> None:
    error = refused(queued(), queue())

    assert error.details["reason"] == "already_exists"


EVERY_LATER_COMMAND: list[Command] = [
    ClaimJob(worker_id="w9", at=at(50)),
    RenewLease(fencing_token=1, at=at(50)),
    StartPhase(fencing_token=1, phase="plan", at=at(50)),
    RecordOutput(
        fencing_token=1, phase="plan", stream=OutputStream.STDOUT, lines=("x",), at=at(50)
    ),
    RecordFile(fencing_token=1, phase="plan", path="a.py", size=1, sha256=SHA, at=at(50)),
    RecordCost(fencing_token=1, phase="plan", tokens=1, usd=0.1, at=at(50)),
    RecordResources(
        fencing_token=1,
        phase="plan",
        used=Resources(cpu_s=1.0, max_rss_bytes=1, read_bytes=1, write_bytes=1),
        at=at(50),
    ),
    ReportProgress(fencing_token=1, percent=50, at=at(50)),
    CompletePhase(fencing_token=1, phase="plan", at=at(50)),
    FailPhase(fencing_token=1, phase="plan", error="e", at=at(50)),
    SkipPhase(fencing_token=1, phase="plan", reason="r", at=at(50)),
    CompleteJob(fencing_token=1, at=at(50)),
    FailJob(fencing_token=1, error="e", at=at(50)),
    AcknowledgeCancel(fencing_token=1, at=at(50)),
    ExpireLease(at=at(50)),
]
WORKER_REPORTS: list[WorkerReport] = [
    c for c in EVERY_LATER_COMMAND if isinstance(c, typing.get_args(WorkerReport))
]


def NAME(command: object) -> str:
    return type(command).__name__


@pytest.mark.parametrize(
    "command", [*EVERY_LATER_COMMAND, RequestCancel(by="a", at=at())], ids=NAME
)
def test_commands_on_a_job_that_does_not_exist_are_refused(command: Command) -> None:
    error = refused(initial_state(), command)

    assert error.details["current_state"] is None
    assert error.details["reason"] == "not_found"


# --- claiming and leases ------------------------------------------------------------------------


def test_claiming_a_queued_job_leases_it_to_the_worker() -> None:
    events = decide(queued(), ClaimJob(worker_id="w1", lease_s=LEASE_S, at=at(1)))

    assert events == [
        JobClaimed(
            job_id=JOB_ID,
            worker_id="w1",
            fencing_token=1,
            lease_expires_at=at(1 + LEASE_S),
            attempt=1,
            at=at(1),
        ),
        JobStarted(job_id=JOB_ID, worker_id="w1", attempt=1, at=at(1)),
    ]
    state = fold(events, queued())
    assert state.status is JobStatus.RUNNING
    assert (state.worker_id, state.fencing_token, state.attempt) == ("w1", 1, 1)
    assert state.started_at == at(1)


def test_a_running_job_cannot_be_claimed_again() -> None:
    error = refused(claimed(), ClaimJob(worker_id="w2", at=at(2)))

    assert error.details["reason"] == "not_queued"


@pytest.mark.parametrize("lease_s", [0.0, -1.0, float("nan"), 3601.0])
def test_a_lease_must_have_a_sensible_length(lease_s: float) -> None:
    with pytest.raises(ValidationError):
        decide(queued(), ClaimJob(worker_id="w1", lease_s=lease_s, at=at(1)))


def test_a_worker_must_offer_the_capabilities_of_every_phase_to_claim() -> None:
    error = refused(queued(), ClaimJob(worker_id="w1", capabilities=("shell",), at=at(1)))

    assert error.details["reason"] == "capabilities_not_covered"
    assert error.details["missing"] == ["llm"]
    assert decide(queued(), ClaimJob(worker_id="w1", capabilities=("shell", "llm"), at=at(1)))


def test_capabilities_cover_only_the_phases_that_still_have_to_run() -> None:
    state = queued(start_phase="build")

    assert phase_capabilities_cover(("shell",), state.phases)
    assert not phase_capabilities_cover(("shell",), PLAN)
    assert missing_capabilities((), PLAN) == {"llm", "shell"}
    assert phase_capabilities_cover(("llm", "shell", "gpu"), PLAN)


def test_renewing_the_lease_extends_it() -> None:
    events = decide(claimed(), RenewLease(fencing_token=1, lease_s=LEASE_S, at=at(20)))

    assert events == [
        JobLeaseRenewed(
            job_id=JOB_ID, fencing_token=1, lease_expires_at=at(20 + LEASE_S), at=at(20)
        )
    ]
    assert fold(events, claimed()).lease_expires_at == at(20 + LEASE_S)


@pytest.mark.parametrize("command", WORKER_REPORTS, ids=NAME)
def test_a_report_with_a_stale_fencing_token_is_refused(command: WorkerReport) -> None:
    state = in_phase("plan")
    stale: WorkerReport = attrs.evolve(command, fencing_token=0, at=at(5))

    error = refused(state, stale)

    assert error.details["reason"] == "stale_fencing_token"


@pytest.mark.parametrize("command", WORKER_REPORTS, ids=NAME)
def test_a_report_on_a_job_that_is_not_claimed_is_refused(command: Command) -> None:
    error = refused(queued(), command)

    assert error.details["reason"] == "stale_fencing_token"


@pytest.mark.parametrize("command", WORKER_REPORTS, ids=NAME)
def test_a_report_after_the_lease_ran_out_is_refused(command: Command) -> None:
    late = attrs.evolve(command, at=at(1 + LEASE_S))

    error = refused(in_phase("plan"), late)

    assert error.details["reason"] == "lease_expired"


# --- phases -------------------------------------------------------------------------------------


def test_phases_start_in_plan_order() -> None:
    state = claimed()

    events = decide(state, StartPhase(fencing_token=1, phase="plan", at=at(2)))

    assert events == [JobPhaseStarted(job_id=JOB_ID, phase="plan", at=at(2))]
    state = fold(events, state)
    assert statuses(state) == [PhaseStatus.RUNNING, PhaseStatus.PENDING, PhaseStatus.PENDING]
    assert phase(state, "plan").started_at == at(2)


def test_a_phase_cannot_start_before_the_ones_ahead_of_it() -> None:
    error = refused(claimed(), StartPhase(fencing_token=1, phase="build", at=at(2)))

    assert error.details["reason"] == "phase_out_of_order"
    assert error.details["expected"] == "plan"


def test_only_one_phase_runs_at_a_time() -> None:
    error = refused(in_phase("plan"), StartPhase(fencing_token=1, phase="build", at=at(3)))

    assert error.details["reason"] == "phase_running"


def test_a_completed_phase_cannot_start_again() -> None:
    state = given(CompletePhase(fencing_token=1, phase="plan", at=at(3)), state=in_phase("plan"))

    error = refused(state, StartPhase(fencing_token=1, phase="plan", at=at(4)))

    assert error.details["reason"] == "phase_out_of_order"


def test_no_phase_starts_after_a_phase_failed() -> None:
    state = given(
        FailPhase(fencing_token=1, phase="plan", error="no plan", at=at(3)), state=in_phase("plan")
    )

    error = refused(state, StartPhase(fencing_token=1, phase="build", at=at(4)))

    assert error.details["reason"] == "phase_failed"


def test_a_phase_that_is_not_in_the_plan_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        decide(claimed(), StartPhase(fencing_token=1, phase="deploy", at=at(2)))
    assert info.value.details["field"] == "phase"


def test_the_next_phase_can_be_skipped() -> None:
    events = decide(claimed(), SkipPhase(fencing_token=1, phase="plan", reason="cached", at=at(2)))

    assert events == [JobPhaseSkipped(job_id=JOB_ID, phase="plan", reason="cached", at=at(2))]
    state = fold(events, claimed())
    assert phase(state, "plan").status is PhaseStatus.SKIPPED
    assert phase(state, "plan").skip_reason == "cached"


def test_a_phase_further_on_cannot_be_skipped() -> None:
    refused(claimed(), SkipPhase(fencing_token=1, phase="test", reason="r", at=at(2)))


def test_output_lines_are_numbered_densely_across_streams() -> None:
    state = in_phase("plan")
    first = decide(
        state,
        RecordOutput(
            fencing_token=1, phase="plan", stream=OutputStream.STDOUT, lines=("a", "b"), at=at(3)
        ),
    )
    state = fold(first, state)
    second = decide(
        state,
        RecordOutput(
            fencing_token=1, phase="plan", stream=OutputStream.STDERR, lines=("c",), at=at(3)
        ),
    )
    state = fold(second, state)

    assert first == [
        JobPhaseOutput(
            job_id=JOB_ID,
            phase="plan",
            stream=OutputStream.STDOUT,
            lines=("a", "b"),
            first_line_no=1,
            attempt=1,
            at=at(3),
        )
    ]
    assert isinstance(second[0], JobPhaseOutput)
    assert second[0].first_line_no == 3
    assert phase(state, "plan").output_lines == 3


@pytest.mark.parametrize(
    "lines", [(), ("x",) * 1001, ("x" * 16_385,)], ids=["empty", "too-many", "too-long"]
)
def test_an_unreasonable_output_batch_is_refused(lines: tuple[str, ...]) -> None:
    command = RecordOutput(
        fencing_token=1, phase="plan", stream=OutputStream.STDOUT, lines=lines, at=at(3)
    )
    with pytest.raises(ValidationError):
        decide(in_phase("plan"), command)


@pytest.mark.parametrize(
    "command",
    [
        RecordOutput(
            fencing_token=1, phase="build", stream=OutputStream.STDOUT, lines=("x",), at=at(3)
        ),
        RecordFile(fencing_token=1, phase="build", path="a", size=1, sha256=SHA, at=at(3)),
        RecordCost(fencing_token=1, phase="build", tokens=1, usd=0.0, at=at(3)),
        RecordResources(
            fencing_token=1,
            phase="build",
            used=Resources(cpu_s=0.5, max_rss_bytes=2**20, read_bytes=0, write_bytes=0),
            at=at(3),
        ),
        CompletePhase(fencing_token=1, phase="build", at=at(3)),
        FailPhase(fencing_token=1, phase="build", error="e", at=at(3)),
    ],
    ids=NAME,
)
def test_only_the_running_phase_takes_output_files_cost_and_results(command: Command) -> None:
    error = refused(in_phase("plan"), command)

    assert error.details["reason"] == "phase_not_running"
    assert error.details["phase_status"] == "pending"


def test_files_are_recorded_and_a_rewritten_file_replaces_its_record() -> None:
    state = in_phase("plan")
    for size, digest in [(10, SHA), (5, "CD" * 32)]:
        command = RecordFile(
            fencing_token=1, phase="plan", path="src/app.py", size=size, sha256=digest, at=at(3)
        )
        events = decide(state, command)
        assert isinstance(events[0], JobPhaseFile)
        state = fold(events, state)
    state = given(
        RecordFile(fencing_token=1, phase="plan", path="README", size=0, sha256=SHA, at=at(3)),
        state=state,
    )

    assert phase(state, "plan").files == (
        FileRecord(path="src/app.py", size=5, sha256="cd" * 32),
        FileRecord(path="README", size=0, sha256=SHA),
    )


@pytest.mark.parametrize(
    "changes",
    [{"path": ""}, {"size": -1}, {"sha256": "abc"}, {"sha256": "zz" * 32}],
    ids=["no-path", "negative-size", "short-digest", "not-hex"],
)
def test_an_invalid_file_record_is_refused(changes: dict[str, typing.Any]) -> None:
    fields: dict[str, typing.Any] = {"path": "a", "size": 1, "sha256": SHA}
    fields.update(changes)
    with pytest.raises(ValidationError):
        decide(in_phase("plan"), RecordFile(fencing_token=1, phase="plan", at=at(3), **fields))


def test_cost_adds_up_on_the_phase_and_the_job() -> None:
    state = in_phase("plan")
    for tokens, usd in [(100, 0.25), (50, 0.5)]:
        events = decide(
            state, RecordCost(fencing_token=1, phase="plan", tokens=tokens, usd=usd, at=at(3))
        )
        assert isinstance(events[0], JobPhaseCost)
        state = fold(events, state)

    assert (phase(state, "plan").cost_tokens, phase(state, "plan").cost_usd) == (150, 0.75)
    assert (state.cost_tokens, state.cost_usd) == (150, 0.75)


@pytest.mark.parametrize(("tokens", "usd"), [(-1, 0.0), (0, -0.01), (0, float("nan"))])
def test_negative_cost_is_refused(tokens: int, usd: float) -> None:
    command = RecordCost(fencing_token=1, phase="plan", tokens=tokens, usd=usd, at=at(3))
    with pytest.raises(ValidationError):
        decide(in_phase("plan"), command)


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [((2**62, 0.0), (2**62, 0.0), "tokens"), ((0, 1e308), (0, 1e308), "usd")],
)
def test_cost_that_would_overflow_the_job_totals_is_refused(
    first: tuple[int, float], second: tuple[int, float], field: str
) -> None:
    state = in_phase("plan")
    tokens, usd = first
    command = RecordCost(fencing_token=1, phase="plan", tokens=tokens, usd=usd, at=at(3))
    state = fold(decide(state, command), state)
    tokens, usd = second

    with pytest.raises(ValidationError) as info:
        decide(state, RecordCost(fencing_token=1, phase="plan", tokens=tokens, usd=usd, at=at(4)))
    assert info.value.details["field"] == field


def resources(phase: str = "plan", **changes: typing.Any) -> RecordResources:
    fields: dict[str, typing.Any] = {
        "cpu_s": 1.5, "max_rss_bytes": 50 * 2**20, "read_bytes": 4096, "write_bytes": 8192,
    }  # fmt: skip
    fields.update(changes)
    return RecordResources(fencing_token=1, phase=phase, used=Resources(**fields), at=at(3))


def test_a_phase_s_latest_resources_replace_the_earlier_ones_and_a_new_run_starts_afresh() -> None:
    state = in_phase("plan")
    for cpu in (0.5, 2.25):
        events = decide(state, resources(cpu_s=cpu))
        assert isinstance(events[0], JobPhaseResources)
        state = fold(events, state)
    assert phase(state, "plan").resources == Resources(
        cpu_s=2.25, max_rss_bytes=50 * 2**20, read_bytes=4096, write_bytes=8192
    )
    assert phase(state, "build").resources is None

    # The lease runs out and the phase runs again: its figures are of the new run.
    lost = given(ExpireLease(at=at(LEASE_S + 10)), state=state)
    due = 3600  # after any retry back-off
    again = given(ClaimJob(worker_id="w2", lease_s=LEASE_S, at=at(due)), state=lost)
    token = again.fencing_token
    rerun = given(StartPhase(fencing_token=token, phase="plan", at=at(due + 1)), state=again)
    assert phase(rerun, "plan").resources is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cpu_s": -0.1}, "cpu_s"),
        ({"cpu_s": float("nan")}, "cpu_s"),
        ({"cpu_s": float("inf")}, "cpu_s"),
        ({"cpu_s": 1e13}, "cpu_s"),
        ({"max_rss_bytes": -1}, "max_rss_bytes"),
        ({"read_bytes": 2**63}, "read_bytes"),
        ({"write_bytes": -5}, "write_bytes"),
    ],
)
def test_resources_out_of_range_are_refused(changes: dict[str, typing.Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        decide(in_phase("plan"), resources(**changes))
    assert info.value.details["field"] == field


def test_a_job_s_resources_add_up_its_phases_with_the_largest_peak() -> None:
    runs = [
        Resources(cpu_s=1.0, max_rss_bytes=100, read_bytes=1, write_bytes=10),
        None,
        Resources(cpu_s=0.5, max_rss_bytes=300, read_bytes=2, write_bytes=20),
    ]
    assert Resources.total(runs) == Resources(
        cpu_s=1.5, max_rss_bytes=300, read_bytes=3, write_bytes=30
    )
    assert Resources.total([None, None]) is None


@pytest.mark.parametrize("percent", [0, 42, 100])
def test_progress_between_0_and_100_is_recorded(percent: int) -> None:
    events = decide(claimed(), ReportProgress(fencing_token=1, percent=percent, at=at(2)))

    assert events == [JobProgressReported(job_id=JOB_ID, percent=percent, at=at(2))]
    assert fold(events, claimed()).progress == percent


@pytest.mark.parametrize("percent", [-1, 101])
def test_progress_outside_0_to_100_is_refused(percent: int) -> None:
    with pytest.raises(ValidationError) as info:
        decide(claimed(), ReportProgress(fencing_token=1, percent=percent, at=at(2)))
    assert info.value.details["field"] == "percent"


def test_completing_the_running_phase_records_its_exit_code() -> None:
    events = decide(in_phase("build"), CompletePhase(fencing_token=1, phase="build", at=at(3)))

    assert events == [JobPhaseCompleted(job_id=JOB_ID, phase="build", exit_code=0, at=at(3))]
    state = fold(events, in_phase("build"))
    assert phase(state, "build").status is PhaseStatus.COMPLETED
    assert phase(state, "build").finished_at == at(3)


def test_a_phase_that_exited_non_zero_cannot_be_reported_completed() -> None:
    with pytest.raises(ValidationError):
        decide(
            in_phase("build"), CompletePhase(fencing_token=1, phase="build", exit_code=2, at=at(3))
        )


def test_failing_the_running_phase_records_the_error() -> None:
    command = FailPhase(
        fencing_token=1,
        phase="build",
        error="make failed",
        exit_code=2,
        stderr_tail=("E",),
        at=at(3),
    )

    events = decide(in_phase("build"), command)

    assert events == [
        JobPhaseFailed(
            job_id=JOB_ID,
            phase="build",
            exit_code=2,
            error="make failed",
            stderr_tail=("E",),
            at=at(3),
        )
    ]
    state = fold(events, in_phase("build"))
    assert (phase(state, "build").status, phase(state, "build").error) == (
        PhaseStatus.FAILED,
        "make failed",
    )
    assert state.status is JobStatus.RUNNING


# --- ending the job -----------------------------------------------------------------------------


def test_completing_the_last_phase_does_not_complete_the_job() -> None:
    assert all_done().status is JobStatus.RUNNING


def test_the_worker_completes_a_job_whose_phases_all_finished() -> None:
    events = decide(all_done(), CompleteJob(fencing_token=1, at=at(4)))

    # Claimed at t=1, ended at t=4: all three phases completed, nothing stored, no cost.
    result = JobResult(phases_completed=3, phases=3, files=0, cost_tokens=0, cost_usd=0.0)
    assert events == [JobCompleted(job_id=JOB_ID, duration_s=3.0, result=result, at=at(4))]
    state = fold(events, all_done())
    assert state.status is JobStatus.COMPLETED
    assert (state.progress, state.finished_at, state.lease_expires_at) == (100, at(4), None)


def test_a_job_with_skipped_phases_can_complete() -> None:
    state = given(
        CompletePhase(fencing_token=1, phase="test", at=at(3)),
        CompleteJob(fencing_token=1, at=at(4)),
        state=given(
            ClaimJob(worker_id="w1", at=at(1)),
            StartPhase(fencing_token=1, phase="test", at=at(2)),
            state=queued(start_phase="test"),
        ),
    )

    assert state.status is JobStatus.COMPLETED


@pytest.mark.parametrize("running_phase", ["plan", "test"])
def test_a_job_with_unfinished_phases_cannot_complete(running_phase: str) -> None:
    error = refused(in_phase(running_phase), CompleteJob(fencing_token=1, at=at(4)))

    assert error.details["reason"] == "phases_unfinished"
    assert running_phase in error.details["phases"]


def test_a_job_with_a_failed_phase_cannot_complete() -> None:
    state = given(
        FailPhase(fencing_token=1, phase="test", error="e", at=at(3)), state=in_phase("test")
    )

    error = refused(state, CompleteJob(fencing_token=1, at=at(4)))

    assert error.details["phases"] == ["test"]


def test_failing_a_job_closes_its_open_phases() -> None:
    events = decide(in_phase("build"), FailJob(fencing_token=1, error="out of disk", at=at(4)))

    assert [type(e) for e in events] == [JobPhaseFailed, JobPhaseSkipped, JobFailed]
    result = JobResult(phases_completed=1, phases=3, files=0, cost_tokens=0, cost_usd=0.0)
    assert events[-1] == JobFailed(
        job_id=JOB_ID, error="out of disk", duration_s=3.0, result=result, at=at(4)
    )
    state = fold(events, in_phase("build"))
    assert state.status is JobStatus.FAILED
    assert state.error == "out of disk"
    assert not state.dead_lettered
    assert statuses(state) == [PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.SKIPPED]


def test_failing_a_job_needs_an_error() -> None:
    with pytest.raises(ValidationError):
        decide(claimed(), FailJob(fencing_token=1, error=" ", at=at(4)))


TERMINAL_JOBS = {"completed": completed, "failed": failed, "cancelled": cancelled}


@pytest.mark.parametrize("make", TERMINAL_JOBS.values(), ids=TERMINAL_JOBS.keys())
@pytest.mark.parametrize("command", EVERY_LATER_COMMAND, ids=NAME)
def test_a_finished_job_refuses_every_later_command(
    make: Callable[[], JobState], command: Command
) -> None:
    error = refused(make(), command)

    assert error.details["reason"] == "terminal"


@pytest.mark.parametrize("make", TERMINAL_JOBS.values(), ids=TERMINAL_JOBS.keys())
def test_cancelling_a_finished_job_records_nothing(make: Callable[[], JobState]) -> None:
    assert decide(make(), RequestCancel(by="alice", at=at(60))) == []


@pytest.mark.parametrize("make", TERMINAL_JOBS.values(), ids=TERMINAL_JOBS.keys())
def test_a_finished_job_has_no_open_phase(make: Callable[[], JobState]) -> None:
    assert not {PhaseStatus.PENDING, PhaseStatus.RUNNING} & set(statuses(make()))


# --- cancelling ---------------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once() -> None:
    events = decide(queued(), RequestCancel(by="alice", reason="not needed", at=at(1)))

    assert events[0] == JobCancelRequested(job_id=JOB_ID, by="alice", reason="not needed", at=at(1))
    assert events[-1] == JobCancelled(job_id=JOB_ID, reason="not needed", at=at(1))
    assert [type(e) for e in events[1:-1]] == [JobPhaseSkipped] * 3
    state = fold(events, queued())
    assert state.status is JobStatus.CANCELLED
    assert statuses(state) == [PhaseStatus.SKIPPED] * 3


def test_a_running_job_is_cancelled_when_the_worker_acknowledges() -> None:
    requested = decide(in_phase("build"), RequestCancel(by="alice", at=at(3)))
    assert [type(e) for e in requested] == [JobCancelRequested]
    state = fold(requested, in_phase("build"))
    assert state.status is JobStatus.RUNNING
    assert state.cancel_requested

    events = decide(state, AcknowledgeCancel(fencing_token=1, at=at(4)))

    assert [type(e) for e in events] == [JobPhaseFailed, JobPhaseSkipped, JobCancelled]
    state = fold(events, state)
    assert state.status is JobStatus.CANCELLED
    assert statuses(state) == [PhaseStatus.COMPLETED, PhaseStatus.FAILED, PhaseStatus.SKIPPED]


def test_requesting_cancellation_twice_records_it_once() -> None:
    state = given(RequestCancel(by="alice", at=at(3)), state=claimed())

    assert decide(state, RequestCancel(by="bob", at=at(4))) == []


def test_acknowledging_a_cancel_nobody_requested_is_refused() -> None:
    error = refused(claimed(), AcknowledgeCancel(fencing_token=1, at=at(3)))

    assert error.details["reason"] == "cancel_not_requested"


@pytest.mark.parametrize(
    "report",
    [CompleteJob(fencing_token=1, at=at(4)), FailJob(fencing_token=1, error="e", at=at(4))],
    ids=NAME,
)
def test_any_end_reported_after_a_cancel_request_cancels_the_job(report: Command) -> None:
    state = given(RequestCancel(by="alice", at=at(3)), state=all_done())

    events = decide(state, report)

    assert [type(e) for e in events] == [JobCancelled]
    assert fold(events, state).status is JobStatus.CANCELLED


def test_no_phase_starts_once_cancellation_was_requested() -> None:
    state = given(RequestCancel(by="alice", at=at(3)), state=claimed())

    error = refused(state, StartPhase(fencing_token=1, phase="plan", at=at(4)))

    assert error.details["reason"] == "cancel_requested"


# --- lost leases and retries --------------------------------------------------------------------


def test_backoff_doubles_from_five_seconds_up_to_five_minutes() -> None:
    assert [backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff(1000) == 300


def test_a_lease_cannot_be_expired_before_it_runs_out() -> None:
    error = refused(claimed(), ExpireLease(at=at(LEASE_S)))

    assert error.details["reason"] == "lease_not_expired"


def test_a_worker_hands_its_job_back_before_the_lease_runs_out_under_its_token() -> None:
    state = in_phase("build")
    now = at(10)
    back = ExpireLease(reason="handed back", fencing_token=1, handed_back=True, at=now)

    events = decide(state, back)

    assert events == [
        JobStuck(job_id=JOB_ID, worker_id="w1", fencing_token=1, reason="handed back", at=now),
        JobRetryScheduled(job_id=JOB_ID, attempt=2, not_before=now + timedelta(seconds=5), at=now),
    ]
    stale = ExpireLease(fencing_token=2, handed_back=True, at=now)
    assert refused(state, stale).details["reason"] == "stale_fencing_token"
    with pytest.raises(ValidationError):
        decide(state, ExpireLease(handed_back=True, at=now))


def test_a_queued_job_has_no_lease_to_expire() -> None:
    error = refused(queued(), ExpireLease(at=at(100)))

    assert error.details["reason"] == "no_lease"


def test_an_expired_lease_marks_the_job_stuck_and_schedules_a_retry() -> None:
    state = in_phase("build")
    expiry = at(1 + LEASE_S)

    events = decide(state, ExpireLease(at=expiry))

    assert events == [
        JobStuck(job_id=JOB_ID, worker_id="w1", fencing_token=1, reason="lease expired", at=expiry),
        JobRetryScheduled(
            job_id=JOB_ID, attempt=2, not_before=expiry + timedelta(seconds=5), at=expiry
        ),
    ]
    state = fold(events, state)
    assert state.status is JobStatus.QUEUED
    assert (state.worker_id, state.lease_expires_at) == (None, None)
    assert statuses(state) == [PhaseStatus.COMPLETED, PhaseStatus.PENDING, PhaseStatus.PENDING]


def test_a_retried_job_is_claimed_again_only_after_its_backoff() -> None:
    expiry = at(1 + LEASE_S)
    state = given(ExpireLease(at=expiry), state=in_phase("build"))

    error = refused(state, ClaimJob(worker_id="w2", at=expiry + timedelta(seconds=4)))
    assert error.details["reason"] == "retry_not_due"

    events = decide(state, ClaimJob(worker_id="w2", at=expiry + timedelta(seconds=5)))
    claim = events[0]
    assert isinstance(claim, JobClaimed)
    assert (claim.fencing_token, claim.attempt) == (2, 2)


def test_the_worker_that_lost_its_lease_can_no_longer_report() -> None:
    expiry = at(1 + LEASE_S)
    state = given(
        ExpireLease(at=expiry),
        ClaimJob(worker_id="w2", lease_s=LEASE_S, at=expiry + timedelta(seconds=5)),
        state=in_phase("build"),
    )

    error = refused(state, CompletePhase(fencing_token=1, phase="build", at=expiry))

    assert error.details["reason"] == "stale_fencing_token"
    assert given(StartPhase(fencing_token=2, phase="build", at=expiry), state=state)


def test_output_of_a_retried_job_names_its_attempt_and_numbers_on_from_the_lost_one() -> None:
    expiry = at(1 + LEASE_S)
    state = given(
        RecordOutput(
            fencing_token=1, phase="build", stream=OutputStream.STDOUT, lines=("first",), at=at(3)
        ),
        ExpireLease(at=expiry),
        ClaimJob(worker_id="w2", lease_s=LEASE_S, at=expiry + timedelta(seconds=5)),
        StartPhase(fencing_token=2, phase="build", at=expiry + timedelta(seconds=6)),
        state=in_phase("build"),
    )

    later = expiry + timedelta(seconds=7)
    [again] = decide(
        state,
        RecordOutput(
            fencing_token=2, phase="build", stream=OutputStream.STDOUT, lines=("second",), at=later
        ),
    )

    assert isinstance(again, JobPhaseOutput)
    assert (again.attempt, again.first_line_no, again.lines) == (2, 2, ("second",))


def test_a_reaper_with_an_old_token_cannot_expire_a_new_lease() -> None:
    error = refused(claimed(), ExpireLease(fencing_token=7, at=at(100)))

    assert error.details["reason"] == "stale_fencing_token"


def test_a_job_whose_attempts_ran_out_is_dead_lettered() -> None:
    state = queued(max_attempts=2)
    t = 0.0
    for _ in range(2):
        t += 400
        state = given(ClaimJob(worker_id="w", lease_s=LEASE_S, at=at(t)), state=state)
        state = given(
            StartPhase(fencing_token=state.fencing_token, phase="plan", at=at(t)), state=state
        )
        last = decide(state, ExpireLease(at=at(t + LEASE_S)))
        state = fold(last, state)

    assert [type(e) for e in last] == [
        JobStuck,
        JobPhaseFailed,
        JobPhaseSkipped,
        JobPhaseSkipped,
        JobFailed,
    ]
    final = last[-1]
    assert isinstance(final, JobFailed)
    assert final.dead_lettered
    assert state.status is JobStatus.FAILED
    assert state.dead_lettered
    assert state.attempt == state.max_attempts == 2


def test_an_expired_lease_on_a_job_being_cancelled_cancels_it() -> None:
    state = given(RequestCancel(by="alice", at=at(2)), state=in_phase("plan"))

    events = decide(state, ExpireLease(at=at(100)))

    assert [type(e) for e in events] == [
        JobStuck,
        JobPhaseFailed,
        JobPhaseSkipped,
        JobPhaseSkipped,
        JobCancelled,
    ]
    assert fold(events, state).status is JobStatus.CANCELLED


def test_an_expired_lease_after_a_phase_failed_fails_the_job_without_a_retry() -> None:
    state = given(
        FailPhase(fencing_token=1, phase="plan", error="bad", at=at(3)), state=in_phase("plan")
    )

    events = decide(state, ExpireLease(at=at(100)))

    final = events[-1]
    assert isinstance(final, JobFailed)
    assert not final.dead_lettered
    assert "bad" in final.error


def test_output_numbering_continues_across_attempts() -> None:
    state = in_phase("plan")
    state = given(
        RecordOutput(
            fencing_token=1, phase="plan", stream=OutputStream.STDOUT, lines=("a",), at=at(3)
        ),
        ExpireLease(at=at(100)),
        ClaimJob(worker_id="w2", at=at(200)),
        StartPhase(fencing_token=2, phase="plan", at=at(201)),
        state=state,
    )

    events = decide(
        state,
        RecordOutput(
            fencing_token=2, phase="plan", stream=OutputStream.STDOUT, lines=("b",), at=at(202)
        ),
    )

    assert isinstance(events[0], JobPhaseOutput)
    assert events[0].first_line_no == 2


# --- the event registry and fold ----------------------------------------------------------------


def test_the_registry_names_every_job_event_once() -> None:
    assert set(EVENTS.values()) == set(typing.get_args(Event))
    assert all(name.startswith("job.") for name in EVENTS)


def test_folding_the_whole_history_gives_the_state_built_step_by_step() -> None:
    history: list[Event] = []
    state = initial_state()
    commands: list[Command] = [
        queue(),
        ClaimJob(worker_id="w1", lease_s=LEASE_S, at=at(1)),
        StartPhase(fencing_token=1, phase="plan", at=at(2)),
        RecordCost(fencing_token=1, phase="plan", tokens=10, usd=0.1, at=at(2)),
        CompletePhase(fencing_token=1, phase="plan", at=at(3)),
        ExpireLease(at=at(40)),
        ClaimJob(worker_id="w2", lease_s=LEASE_S, at=at(50)),
        SkipPhase(fencing_token=2, phase="build", reason="r", at=at(51)),
        StartPhase(fencing_token=2, phase="test", at=at(52)),
        CompletePhase(fencing_token=2, phase="test", at=at(53)),
        CompleteJob(fencing_token=2, at=at(54)),
    ]
    for command in commands:
        events = decide(state, command)
        history += events
        state = fold(events, state)

    assert fold(history) == state
    assert state.status is JobStatus.COMPLETED
    assert state.attempt == 2
    assert state.started_at == at(1)


def test_the_terminal_statuses_and_the_events_that_end_a_job_are_one_definition() -> None:
    from helix.domain.job import TERMINAL, TERMINAL_EVENT_TYPES

    assert {s.value for s in TERMINAL} == {"completed", "failed", "cancelled"}
    assert {f"job.{s.value}" for s in TERMINAL} == TERMINAL_EVENT_TYPES


def test_a_failed_job_is_requeued_with_the_phases_its_failure_left_undone() -> None:
    state = failed()  # plan completed, build failed while running, test skipped with the job
    [event] = decide(state, RequeueJob(by="alice", max_attempts=3, at=at(5)))
    assert event == JobRequeued(
        job_id=JOB_ID, by="alice", phases=("build", "test"), max_attempts=4, at=at(5)
    )
    again = fold([event], state)
    assert (again.status, again.error, again.finished_at) == (JobStatus.QUEUED, None, None)
    assert statuses(again) == [PhaseStatus.COMPLETED, PhaseStatus.PENDING, PhaseStatus.PENDING]
    assert phase(again, "build").exit_code is None and phase(again, "test").skip_reason is None
    claim = decide(again, ClaimJob(worker_id="w2", lease_s=LEASE_S, at=at(6)))
    claimed_again = fold(claim, again)
    assert (claimed_again.attempt, claimed_again.fencing_token) == (2, 2)


def test_phases_skipped_before_the_start_phase_stay_skipped_when_requeued() -> None:
    state = given(
        ClaimJob(worker_id="w1", lease_s=LEASE_S, at=at(1)),
        FailJob(fencing_token=1, error="no disk", at=at(2)),
        state=queued(start_phase="build"),
    )
    [event] = decide(state, RequeueJob(by="alice", max_attempts=1, at=at(3)))
    assert isinstance(event, JobRequeued) and event.phases == ("build", "test")
    assert statuses(fold([event], state))[0] is PhaseStatus.SKIPPED


@pytest.mark.parametrize("state", [queued, claimed, in_phase, completed, cancelled])
def test_only_a_failed_job_can_be_requeued(state: Callable[[], JobState]) -> None:
    error = refused(state(), RequeueJob(by="alice", max_attempts=3, at=at(9)))
    assert error.details["reason"] == "not_failed"


def test_a_requeue_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValidationError):
        decide(failed(), RequeueJob(by="alice", max_attempts=0, at=at(9)))


def test_a_pause_asked_of_an_attempt_that_failed_ends_with_it_when_the_job_is_requeued() -> None:
    state = given(PauseJob(by="alice", at=at(3)), state=in_phase("plan"))
    assert state.pause_requested and state.status is JobStatus.RUNNING
    state = given(FailJob(fencing_token=1, error="flaky", at=at(4)), state=state)

    state = given(RequeueJob(by="alice", max_attempts=1, at=at(5)), state=state)

    assert state.status is JobStatus.QUEUED and not state.pause_requested
