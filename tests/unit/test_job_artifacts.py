"""The job decider's artifacts, without a database: what may be stored, under which limits,
and which version of a path is current once phases and attempts store it again."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.domain.job import (
    ClaimJob,
    CompleteJob,
    CompletePhase,
    ExpireLease,
    FailJob,
    JobArtifactNotStored,
    JobArtifactStored,
    JobCompleted,
    JobFailed,
    JobResult,
    JobState,
    QueueJob,
    RecordArtifactNotStored,
    RecordCost,
    StartPhase,
    StoreArtifact,
    check_artifact_path,
    decide,
    fold,
    initial_state,
)
from helix.domain.project import PhaseSpec
from helix.errors import InvalidTransition, PayloadTooLarge, ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
JOB_ID = UUID("00000000-0000-4000-8000-0000000000a7")
PLAN = (PhaseSpec(name="plan", command=("agent",)), PhaseSpec(name="build", command=("make",)))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def applied(state: JobState, *commands: object) -> JobState:
    for command in commands:
        state = fold(decide(state, command), state)  # type: ignore[arg-type]
    return state


def running() -> JobState:
    """Claimed at t=1 (attempt 1, token 1), its first phase running since t=2."""
    queue = QueueJob(
        job_id=JOB_ID, project_id=UUID(int=1), owner="alice", phases=PLAN, requested_by="alice",
        max_attempts=10, at=at(0),
    )  # fmt: skip
    return applied(
        initial_state(),
        queue,
        ClaimJob(worker_id="w1", lease_s=1000, at=at(1)),
        StartPhase(fencing_token=1, phase="plan", at=at(2)),
    )


def store(
    path: str,
    size: int,
    *,
    token: int = 1,
    phase: str = "plan",
    t: float = 3,
    max_bytes: int | None = None,
    job_max_bytes: int | None = None,
) -> StoreArtifact:
    return StoreArtifact(
        fencing_token=token, phase=phase, path=path, size=size, sha256=f"{size:064x}", at=at(t),
        max_bytes=max_bytes, job_max_bytes=job_max_bytes,
    )  # fmt: skip


def test_a_stored_file_is_the_paths_current_version_with_its_attempt() -> None:
    [event] = decide(running(), store("out/a.txt", 5))
    assert isinstance(event, JobArtifactStored)
    assert (event.path, event.phase, event.size, event.attempt) == ("out/a.txt", "plan", 5, 1)
    state = fold([event], running())
    artifact = state.artifacts["out/a.txt"]
    assert (artifact.stored, artifact.reason, artifact.sha256) == (True, None, f"{5:064x}")


def test_a_rerun_attempt_replaces_the_version_an_earlier_attempt_stored() -> None:
    first = applied(running(), store("a.txt", 5))
    retried = applied(
        first,
        ExpireLease(at=at(2000)),
        ClaimJob(worker_id="w2", lease_s=1000, at=at(3000)),
        StartPhase(fencing_token=2, phase="plan", at=at(3001)),
    )
    # The first attempt's worker can store nothing more.
    with pytest.raises(InvalidTransition):
        decide(retried, store("a.txt", 6, token=1, t=3002))
    second = applied(retried, store("a.txt", 7, token=2, t=3002))
    artifact = second.artifacts["a.txt"]
    assert (artifact.attempt, artifact.size, artifact.created_at) == (2, 7, at(3))
    assert artifact.updated_at == at(3002)


def test_a_file_not_stored_is_the_paths_current_version_with_its_reason() -> None:
    state = applied(running(), store("a.txt", 5))
    refused = RecordArtifactNotStored(
        fencing_token=1, phase="plan", path="a.txt", size=99, reason="too big", at=at(4)
    )
    [event] = decide(state, refused)
    assert isinstance(event, JobArtifactNotStored)
    artifact = fold([event], state).artifacts["a.txt"]
    assert (artifact.stored, artifact.reason, artifact.size, artifact.sha256) == (
        False,
        "too big",
        99,
        None,
    )
    assert fold([event], state).stored_bytes() == 0


def test_the_limits_per_file_and_per_job_count_current_versions_only() -> None:
    with pytest.raises(PayloadTooLarge):
        decide(running(), store("a", 11, max_bytes=10))
    decide(running(), store("a", 10, max_bytes=10))
    state = applied(running(), store("a", 20, job_max_bytes=30))
    # `a` again replaces its 20 bytes; `b` would take the job past 30.
    state = applied(state, store("a", 25, job_max_bytes=30))
    with pytest.raises(PayloadTooLarge) as refused:
        decide(state, store("b", 6, job_max_bytes=30))
    assert refused.value.details["stored_bytes"] == 25
    decide(state, store("b", 5, job_max_bytes=30))


def test_only_the_running_phase_stores_files() -> None:
    with pytest.raises(InvalidTransition):
        decide(running(), store("a", 1, phase="build"))


@pytest.mark.parametrize(
    "path", ["", "/etc/shadow", "../x", "a/../../x", "a/./b", "a//b", "a/", ".", "..", "a\x00b"]
)
def test_a_path_that_is_not_plainly_inside_the_workspace_is_refused(path: str) -> None:
    with pytest.raises(ValidationError):
        decide(running(), store(path, 1))


@given(st.text(alphabet=st.sampled_from("ab./\x00 "), max_size=12))
def test_an_accepted_path_never_leads_out_of_the_workspace(path: str) -> None:
    try:
        check_artifact_path(path)
    except ValidationError:
        return
    normal = posixpath.normpath(path)
    assert normal == path
    assert not posixpath.isabs(normal) and normal.split("/")[0] != ".."
    assert "\x00" not in path


JOB_LIMIT = 100
FILE_LIMIT = 60
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["store", "not_stored", "retry"]),
        st.sampled_from(["a", "b", "dir/c"]),
        st.integers(min_value=0, max_value=80),
    ),
    max_size=30,
)


@given(OPERATIONS)
def test_each_path_shows_its_last_accepted_version_and_the_job_stays_within_its_limit(
    operations: list[tuple[str, str, int]],
) -> None:
    state, token, t = running(), 1, 3.0
    last: dict[str, tuple[int, bool, int]] = {}  # path → (size, stored, attempt)
    for kind, path, size in operations:
        t += 1
        if kind == "retry":
            if state.attempt + 1 >= state.max_attempts:
                continue  # the next lost lease would fail the job
            state = applied(
                state,
                ExpireLease(at=at(t + 1000)),
                ClaimJob(worker_id="w", lease_s=1000, at=at(t + 2000)),
                StartPhase(fencing_token=token + 1, phase="plan", at=at(t + 2001)),
            )
            token, t = token + 1, t + 2001
            continue
        if kind == "store":
            command: object = store(
                path, size, token=token, t=t, max_bytes=FILE_LIMIT, job_max_bytes=JOB_LIMIT
            )
        else:
            command = RecordArtifactNotStored(
                fencing_token=token, phase="plan", path=path, size=size, reason="no", at=at(t)
            )
        try:
            state = applied(state, command)
        except PayloadTooLarge:
            assert size > FILE_LIMIT or state.stored_bytes(besides=path) + size > JOB_LIMIT
            continue
        last[path] = (size, kind == "store", state.attempt)
        assert state.stored_bytes() <= JOB_LIMIT
    assert {p: (a.size, a.stored, a.attempt) for p, a in state.artifacts.items()} == last
    assert state.stored_bytes() == sum(size for size, stored, _ in last.values() if stored)


def test_a_jobs_end_says_how_long_it_ran_and_what_it_came_to() -> None:
    state = applied(
        running(),
        store("out/a.txt", 5),
        store("out/b.txt", 7),
        RecordArtifactNotStored(
            fencing_token=1, phase="plan", path="huge.bin", size=10**9, sha256=None,
            reason="too_large", at=at(3),
        ),
        RecordCost(fencing_token=1, phase="plan", tokens=120, usd=0.25, at=at(3)),
        CompletePhase(fencing_token=1, phase="plan", at=at(4)),
        StartPhase(fencing_token=1, phase="build", at=at(4)),
    )  # fmt: skip
    [*_closing, failure] = decide(state, FailJob(fencing_token=1, error="boom", at=at(9.5)))
    assert isinstance(failure, JobFailed) and failure.duration_s == 8.5  # from its start at t=1
    assert failure.result == JobResult(
        phases_completed=1, phases=2, files=2, cost_tokens=120, cost_usd=0.25
    )
    done = applied(state, CompletePhase(fencing_token=1, phase="build", at=at(5)))
    [completion] = decide(done, CompleteJob(fencing_token=1, at=at(6)))
    assert isinstance(completion, JobCompleted) and completion.duration_s == 5.0
    assert completion.result == JobResult(
        phases_completed=2, phases=2, files=2, cost_tokens=120, cost_usd=0.25
    )


def test_a_job_that_never_started_counts_its_duration_from_its_queueing() -> None:
    queue = QueueJob(
        job_id=JOB_ID, project_id=UUID(int=1), owner="alice", phases=PLAN, requested_by="alice",
        max_attempts=1, at=at(0),
    )  # fmt: skip
    state = applied(initial_state(), queue, ClaimJob(worker_id="w1", lease_s=1, at=at(1)))
    # Its one attempt's lease lapsed before any phase ran: dead-lettered.
    events = decide(state, ExpireLease(at=at(30)))
    [failure] = [e for e in events if isinstance(e, JobFailed)]
    assert failure.dead_lettered and failure.result is not None
    assert failure.result.phases_completed == 0 and failure.duration_s is not None
