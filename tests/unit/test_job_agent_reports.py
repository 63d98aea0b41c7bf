"""The job decider's agent reports and limits: messages, created/modified files, prompts and
the duration limit, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from helix.domain.job import (
    DURATION_LIMIT,
    ClaimJob,
    CompleteJob,
    EnforceDurationLimit,
    FileChange,
    JobFailed,
    JobPhaseFailed,
    JobPhaseFile,
    JobPhaseMessage,
    JobPhaseSkipped,
    JobState,
    JobStatus,
    QueueJob,
    RecordFile,
    RecordMessage,
    RequestCancel,
    StartPhase,
    decide,
    fold,
    initial_state,
)
from helix.domain.job.decider import MAX_AGENT_MESSAGE_CHARS
from helix.domain.project import PhaseSpec
from helix.errors import InvalidTransition, ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
JOB_ID = UUID("00000000-0000-4000-8000-0000000000c1")
PLAN = (
    PhaseSpec(name="plan", command=("agent",), prompt="Write PLAN.md"),
    PhaseSpec(name="build", command=("make",)),
)
SHA = "cd" * 32


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(max_duration_s: float | None = None) -> JobState:
    """Claimed at t=1 (lease 1000 s), its first phase running since t=2."""
    state = initial_state()
    for command in (
        QueueJob(
            job_id=JOB_ID,
            project_id=UUID(int=1),
            owner="alice",
            phases=PLAN,
            requested_by="alice",
            max_duration_s=max_duration_s,
            at=at(0),
        ),
        ClaimJob(worker_id="w1", lease_s=1000, at=at(1)),
        StartPhase(fencing_token=1, phase="plan", at=at(2)),
    ):
        state = fold(decide(state, command), state)
    return state


def test_a_phase_prompt_is_kept_in_the_jobs_plan() -> None:
    assert running().phases[0].prompt == "Write PLAN.md"
    assert running().phases[0].spec.prompt == "Write PLAN.md"


def test_a_running_phase_message_is_recorded_for_the_discussion() -> None:
    events = decide(
        running(), RecordMessage(fencing_token=1, phase="plan", content="Plan ready", at=at(3))
    )
    assert events == [JobPhaseMessage(job_id=JOB_ID, phase="plan", content="Plan ready", at=at(3))]


@pytest.mark.parametrize("content", ["", "   ", "x" * (MAX_AGENT_MESSAGE_CHARS + 1)])
def test_an_empty_or_overlong_message_is_refused(content: str) -> None:
    with pytest.raises(ValidationError):
        decide(running(), RecordMessage(fencing_token=1, phase="plan", content=content, at=at(3)))


def test_a_message_under_a_stale_token_or_for_a_phase_not_running_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="fencing token"):
        decide(running(), RecordMessage(fencing_token=7, phase="plan", content="hi", at=at(3)))
    with pytest.raises(InvalidTransition, match="not running"):
        decide(running(), RecordMessage(fencing_token=1, phase="build", content="hi", at=at(3)))


def test_a_file_says_whether_the_phase_created_or_modified_it() -> None:
    record = RecordFile(
        fencing_token=1,
        phase="plan",
        path="PLAN.md",
        size=3,
        sha256=SHA,
        change=FileChange.CREATED,
        at=at(3),
    )
    [event] = decide(running(), record)
    assert isinstance(event, JobPhaseFile) and event.change is FileChange.CREATED
    state = fold([event], running())
    assert state.phases[0].files[0].fields() == {
        "path": "PLAN.md",
        "size": 3,
        "sha256": SHA,
        "change": "created",
    }


def test_a_job_past_its_duration_limit_fails_with_the_reason_duration_limit() -> None:
    events = decide(running(max_duration_s=60), EnforceDurationLimit(fencing_token=1, at=at(61)))
    assert [type(e) for e in events] == [JobPhaseFailed, JobPhaseSkipped, JobFailed]
    failed = events[-1]
    assert isinstance(failed, JobFailed) and failed.reason == DURATION_LIMIT
    assert "60 s" in failed.error
    state = fold(events, running(max_duration_s=60))
    assert state.status is JobStatus.FAILED
    # The worker's next report is fenced off: the job is over.
    with pytest.raises(InvalidTransition) as refused:
        decide(state, CompleteJob(fencing_token=1, at=at(62)))
    assert refused.value.details["reason"] == "terminal"


@pytest.mark.parametrize(
    ("limit", "now"), [(None, 10_000), (60, 60.9), (60, 30)], ids=["none", "edge", "within"]
)
def test_a_job_within_its_limit_or_without_one_is_not_failed(
    limit: float | None, now: float
) -> None:
    # Started at t=1 (the claim): a limit of 60 s runs out at t=61.
    state = running(max_duration_s=limit)
    with pytest.raises(InvalidTransition, match="duration limit"):
        decide(state, EnforceDurationLimit(at=at(now)))


def test_the_limit_is_enforced_under_the_token_the_reaper_read() -> None:
    with pytest.raises(InvalidTransition, match="fencing token"):
        decide(running(max_duration_s=1), EnforceDurationLimit(fencing_token=2, at=at(100)))


def test_a_job_past_its_limit_with_a_cancel_requested_is_cancelled() -> None:
    state = fold(
        decide(running(max_duration_s=1), RequestCancel(by="alice", at=at(3))),
        running(max_duration_s=1),
    )
    events = decide(state, EnforceDurationLimit(at=at(100)))
    assert fold(events, state).status is JobStatus.CANCELLED


@pytest.mark.parametrize("limit", [0, -1, float("inf"), float("nan"), 10**9])
def test_an_impossible_duration_limit_is_refused_at_queue_time(limit: float) -> None:
    with pytest.raises(ValidationError):
        decide(
            initial_state(),
            QueueJob(
                job_id=JOB_ID,
                project_id=UUID(int=1),
                owner="alice",
                phases=PLAN,
                requested_by="alice",
                max_duration_s=limit,
                at=at(0),
            ),
        )
