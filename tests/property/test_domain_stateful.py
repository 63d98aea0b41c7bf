"""Random command sequences, legal and illegal, never break the domain's invariants.

A hypothesis state machine drives one project and a few jobs with every kind of command, with
fencing tokens that are sometimes stale, times that are sometimes past a lease's expiry and
content that is sometimes invalid. Each accepted command's events are applied with `evolve`;
each refused command must raise InvalidTransition (carrying the current state) or
ValidationError.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from helix.domain import job, project
from helix.domain.job import JobStatus, OutputStream, PhaseStatus
from helix.domain.project import MessageRole, PhaseSpec
from helix.errors import InvalidTransition, ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROJECT_ID = UUID("00000000-0000-4000-8000-000000000001")
JOB_IDS = tuple(UUID(f"00000000-0000-4000-8000-0000000000b{i}") for i in range(3))
PHASE_NAMES = ("plan", "build", "test", "docs")
SHA = "ab" * 32

job_index = st.integers(0, len(JOB_IDS) - 1)
# Mostly the live token, sometimes an older or a future one.
token_delta = st.sampled_from([0, 0, 0, 0, 0, -1, 1])
phase_choice = st.sampled_from(["next", "next", "running", "running", *PHASE_NAMES, "nope"])
phase_specs = st.builds(
    lambda name, has_command, caps, timeout: PhaseSpec(
        name=name,
        command=("run", name) if has_command else None,
        capabilities=caps,
        timeout_s=timeout,
    ),
    st.sampled_from(PHASE_NAMES),
    st.booleans(),
    st.sampled_from([(), (), (), ("llm",), ("gpu",)]),
    st.sampled_from([None, None, None, 30.0, 0.0]),
)
valid_plans = st.lists(
    phase_specs.filter(lambda p: p.timeout_s != 0.0),
    min_size=1,
    max_size=4,
    unique_by=lambda p: p.name,
).map(tuple)
# Mostly valid plans; sometimes empty, with a duplicate name or a zero timeout.
plans = st.one_of(
    valid_plans, valid_plans, valid_plans, st.lists(phase_specs, max_size=4).map(tuple)
)
texts = st.sampled_from(["fine", "fine", "", "x" * 201])
capability_sets = st.one_of(
    st.none(), st.none(), st.sampled_from([(), ("shell",), ("shell", "llm", "gpu")])
)

# A phase-status pattern per job status: d = done (completed/skipped), r running, f failed,
# p pending. Phases run in plan order, so the open phase is always after the done ones.
_CODES = {
    PhaseStatus.COMPLETED: "d",
    PhaseStatus.SKIPPED: "d",
    PhaseStatus.RUNNING: "r",
    PhaseStatus.FAILED: "f",
    PhaseStatus.PENDING: "p",
}
_PATTERNS = {
    JobStatus.QUEUED: re.compile(r"d*p*\Z"),
    JobStatus.RUNNING: re.compile(r"d*[rf]?p*\Z"),
    JobStatus.PAUSED: re.compile(r"d*p*\Z"),
    JobStatus.COMPLETED: re.compile(r"d*\Z"),
    JobStatus.FAILED: re.compile(r"d*f?d*\Z"),
    JobStatus.CANCELLED: re.compile(r"d*f?d*\Z"),
}


# What may happen to a paused job: it is resumed, or cancelled (its pending phases skipped).
_WHILE_PAUSED = (job.JobResumed, job.JobCancelRequested, job.JobCancelled, job.JobPhaseSkipped)


def _value(status: project.ProjectStatus | JobStatus | None) -> str | None:
    return status.value if status is not None else None


class DomainMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.project = project.initial_state()
        self.project_history: list[project.Event] = []
        self.jobs = {job_id: job.initial_state() for job_id in JOB_IDS}
        self.job_histories: dict[UUID, list[job.Event]] = {job_id: [] for job_id in JOB_IDS}
        self.job_tokens: dict[UUID, list[int]] = {job_id: [] for job_id in JOB_IDS}

    # --- applying commands ----------------------------------------------------------------------

    def apply_project(self, command: project.Command) -> None:
        before = self.project
        try:
            events = project.decide(before, command)
        except InvalidTransition as error:
            assert error.details["current_state"] == _value(before.status)
            assert self.project is before
            return
        except ValidationError:
            assert self.project is before
            return
        assert project.decide(before, command) == events, "decide is deterministic"
        if before.archived:
            assert len(events) == isinstance(command, project.UnarchiveProject)
        state = before
        for event in events:
            state = project.evolve(state, event)
        match command:
            case project.ArchiveProject():
                assert state.archived
            case project.UnarchiveProject():
                assert not state.archived and state.status is before.status
            case _:
                assert state.archived == before.archived, "only (un)archiving moves the flag"
        self.project = state
        self.project_history.extend(events)

    def apply_job(self, index: int, command: job.Command) -> None:
        job_id = JOB_IDS[index]
        before = self.jobs[job_id]
        try:
            events = job.decide(before, command)
        except InvalidTransition as error:
            assert error.details["current_state"] == _value(before.status)
            assert self.jobs[job_id] is before
            return
        except ValidationError:
            assert self.jobs[job_id] is before
            return
        assert job.decide(before, command) == events, "decide is deterministic"
        if before.is_terminal and not isinstance(command, job.RequeueJob):
            assert events == [], "a finished job records nothing more (unless requeued)"
        state = before
        for event in events:
            after = job.evolve(state, event)
            self.check_job_step(job_id, state, after, event)
            state = after
        self.jobs[job_id] = state
        self.job_histories[job_id].extend(events)

    def check_job_step(
        self, job_id: UUID, before: job.JobState, after: job.JobState, event: job.Event
    ) -> None:
        if isinstance(event, job.JobRequeued):
            assert before.status is JobStatus.FAILED, "only a failed job is requeued"
            assert after.status is JobStatus.QUEUED and not after.dead_lettered
            assert event.phases and all(
                after.phase(name).status is PhaseStatus.PENDING  # type: ignore[union-attr]
                for name in event.phases
            ), "what the failure left undone is pending again"
            assert [p for p in after.phases if p.name not in event.phases] == [
                p for p in before.phases if p.name not in event.phases
            ], "the rest of the phases are as they were"
            assert after.attempt - after.paused_attempts < after.max_attempts, "fresh attempts"
        elif before.is_terminal:
            raise AssertionError(f"{event!r} recorded on a {before.status} job")
        if isinstance(event, job.JobClaimed):
            tokens = self.job_tokens[job_id]
            assert not tokens or event.fencing_token > tokens[-1]
            assert event.fencing_token > before.fencing_token
            tokens.append(event.fencing_token)
        if before.status is JobStatus.PAUSED:
            assert isinstance(event, _WHILE_PAUSED), f"{event!r} recorded on a paused job"
        if isinstance(event, job.JobPhaseStarted):
            assert before.status is JobStatus.RUNNING and not before.pause_requested, (
                "a paused job, or one whose pause was requested, starts no phase"
            )
            names = [p.name for p in before.phases]
            index = names.index(event.phase)
            assert before.phases[index].status is PhaseStatus.PENDING
            assert before.running_phase is None
            assert all(
                p.status in (PhaseStatus.COMPLETED, PhaseStatus.SKIPPED)
                for p in before.phases[:index]
            ), "phases start in plan order"
        assert after.fencing_token >= before.fencing_token

    def token(self, index: int, delta: int) -> int:
        return self.jobs[JOB_IDS[index]].fencing_token + delta

    def phase_name(self, index: int, choice: str) -> str:
        state = self.jobs[JOB_IDS[index]]
        if choice == "next":
            phase = state.next_phase
        elif choice == "running":
            phase = state.running_phase
        else:
            return choice
        return phase.name if phase is not None else "plan"

    # --- time -----------------------------------------------------------------------------------

    @initialize(
        create_project=st.booleans(),
        queued=st.integers(0, len(JOB_IDS)),
        plan=valid_plans,
        max_attempts=st.integers(1, 3),
    )
    def start_with(
        self, create_project: bool, queued: int, plan: tuple[PhaseSpec, ...], max_attempts: int
    ) -> None:
        """Most runs begin with a project and some queued jobs, so that deep states are reached."""
        if create_project:
            self.apply_project(
                project.CreateProject(
                    project_id=PROJECT_ID, name="p", owner="alice", phases=plan, at=self.now
                )
            )
        for index in range(queued):
            self.apply_job(
                index,
                job.QueueJob(
                    job_id=JOB_IDS[index],
                    project_id=PROJECT_ID,
                    owner="alice",
                    phases=plan,
                    requested_by="alice",
                    max_attempts=max_attempts,
                    at=self.now,
                ),
            )

    @rule(seconds=st.sampled_from([0, 0, 0, 1, 2, 5, 10, 60]))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # --- project rules --------------------------------------------------------------------------

    @rule(name=texts, phases=plans)
    def create_project(self, name: str, phases: tuple[PhaseSpec, ...]) -> None:
        self.apply_project(
            project.CreateProject(
                project_id=PROJECT_ID, name=name, owner="alice", phases=phases, at=self.now
            )
        )

    @rule(name=st.one_of(st.none(), texts), description=st.sampled_from([None, "", "about"]))
    def update_project(self, name: str | None, description: str | None) -> None:
        self.apply_project(project.UpdateProject(name=name, description=description, at=self.now))

    @rule(phases=plans)
    def plan_phases(self, phases: tuple[PhaseSpec, ...]) -> None:
        self.apply_project(project.PlanPhases(phases=phases, at=self.now))

    # `role` is sometimes "robot", which is not a MessageRole: decide must refuse it.
    @rule(role=st.sampled_from([*MessageRole, "robot"]), content=st.sampled_from(["hi", "", " "]))
    def post_message(self, role: MessageRole, content: str) -> None:
        message_id = UUID(int=len(self.project_history) + 1)
        self.apply_project(
            project.PostMessage(
                message_id=message_id, role=role, author="alice", content=content, at=self.now
            )
        )

    @rule()
    def mark_ready(self) -> None:
        self.apply_project(project.MarkReady(at=self.now))

    @rule(index=job_index)
    def start_run(self, index: int) -> None:
        self.apply_project(project.StartRun(job_id=JOB_IDS[index], at=self.now))

    @rule()
    def pause_project(self) -> None:
        self.apply_project(project.PauseProject(at=self.now))

    @rule()
    def resume_project(self) -> None:
        self.apply_project(project.ResumeProject(at=self.now))

    @rule(index=job_index, succeeded=st.booleans())
    def finish_run(self, index: int, succeeded: bool) -> None:
        self.apply_project(
            project.FinishRun(job_id=JOB_IDS[index], succeeded=succeeded, at=self.now)
        )

    @rule(index=job_index)
    def cancel_run(self, index: int) -> None:
        self.apply_project(project.CancelRun(job_id=JOB_IDS[index], at=self.now))

    @rule()
    def archive_project(self) -> None:
        self.apply_project(project.ArchiveProject(at=self.now))

    @rule()
    def unarchive_project(self) -> None:
        self.apply_project(project.UnarchiveProject(at=self.now))

    # --- job rules ------------------------------------------------------------------------------

    @rule(
        index=job_index,
        phases=plans,
        start=st.one_of(st.none(), st.sampled_from([*PHASE_NAMES, "nope"])),
        max_attempts=st.integers(0, 3),
        use_project_plan=st.booleans(),
    )
    def queue_job(
        self,
        index: int,
        phases: tuple[PhaseSpec, ...],
        start: str | None,
        max_attempts: int,
        use_project_plan: bool,
    ) -> None:
        if use_project_plan and self.project.phases:
            phases = self.project.phases
        self.apply_job(
            index,
            job.QueueJob(
                job_id=JOB_IDS[index],
                project_id=PROJECT_ID,
                owner="alice",
                phases=phases,
                requested_by="alice",
                start_phase=start,
                max_attempts=max_attempts,
                at=self.now,
            ),
        )

    @rule(
        index=job_index,
        worker=st.sampled_from(["w1", "w2"]),
        lease_s=st.sampled_from([10.0, 30.0, 30.0, 30.0, 0.0]),
        capabilities=capability_sets,
        wait_for_retry=st.booleans(),
    )
    def claim_job(
        self,
        index: int,
        worker: str,
        lease_s: float,
        capabilities: tuple[str, ...] | None,
        wait_for_retry: bool,
    ) -> None:
        not_before = self.jobs[JOB_IDS[index]].not_before
        if wait_for_retry and not_before is not None:
            self.now = max(self.now, not_before)
        self.apply_job(
            index,
            job.ClaimJob(worker_id=worker, lease_s=lease_s, capabilities=capabilities, at=self.now),
        )

    @rule(index=job_index, delta=token_delta, lease_s=st.sampled_from([10.0, 30.0]))
    def renew_lease(self, index: int, delta: int, lease_s: float) -> None:
        self.apply_job(
            index,
            job.RenewLease(fencing_token=self.token(index, delta), lease_s=lease_s, at=self.now),
        )

    @rule(index=job_index, delta=token_delta, choice=phase_choice)
    def start_phase(self, index: int, delta: int, choice: str) -> None:
        self.apply_job(
            index,
            job.StartPhase(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                at=self.now,
            ),
        )

    @rule(
        index=job_index,
        delta=token_delta,
        choice=phase_choice,
        stream=st.sampled_from(OutputStream),
        count=st.integers(0, 3),
    )
    def record_output(
        self, index: int, delta: int, choice: str, stream: OutputStream, count: int
    ) -> None:
        self.apply_job(
            index,
            job.RecordOutput(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                stream=stream,
                lines=tuple(f"line {n}" for n in range(count)),
                at=self.now,
            ),
        )

    @rule(
        index=job_index,
        delta=token_delta,
        choice=phase_choice,
        path=st.sampled_from(["a.py", "b.py", ""]),
        size=st.integers(-1, 10),
    )
    def record_file(self, index: int, delta: int, choice: str, path: str, size: int) -> None:
        self.apply_job(
            index,
            job.RecordFile(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                path=path,
                size=size,
                sha256=SHA,
                at=self.now,
            ),
        )

    @rule(
        index=job_index,
        delta=token_delta,
        choice=phase_choice,
        tokens=st.integers(-1, 1000),
        usd=st.sampled_from([0.0, 0.25, 1.5, -0.1]),
    )
    def record_cost(self, index: int, delta: int, choice: str, tokens: int, usd: float) -> None:
        self.apply_job(
            index,
            job.RecordCost(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                tokens=tokens,
                usd=usd,
                at=self.now,
            ),
        )

    @rule(index=job_index, delta=token_delta, percent=st.integers(-5, 105))
    def report_progress(self, index: int, delta: int, percent: int) -> None:
        self.apply_job(
            index,
            job.ReportProgress(
                fencing_token=self.token(index, delta), percent=percent, at=self.now
            ),
        )

    @rule(
        index=job_index,
        delta=token_delta,
        choice=phase_choice,
        exit_code=st.sampled_from([0, 0, None, 1]),
    )
    def complete_phase(self, index: int, delta: int, choice: str, exit_code: int | None) -> None:
        self.apply_job(
            index,
            job.CompletePhase(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                exit_code=exit_code,
                at=self.now,
            ),
        )

    @rule(index=job_index, delta=token_delta, choice=phase_choice, error=texts)
    def fail_phase(self, index: int, delta: int, choice: str, error: str) -> None:
        self.apply_job(
            index,
            job.FailPhase(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                error=error,
                exit_code=1,
                at=self.now,
            ),
        )

    @rule(index=job_index, delta=token_delta, choice=phase_choice)
    def skip_phase(self, index: int, delta: int, choice: str) -> None:
        self.apply_job(
            index,
            job.SkipPhase(
                fencing_token=self.token(index, delta),
                phase=self.phase_name(index, choice),
                reason="not needed",
                at=self.now,
            ),
        )

    @rule(index=job_index, delta=token_delta)
    def complete_job(self, index: int, delta: int) -> None:
        self.apply_job(index, job.CompleteJob(fencing_token=self.token(index, delta), at=self.now))

    @rule(index=job_index, delta=token_delta, error=texts, requeue=st.booleans())
    def fail_job(self, index: int, delta: int, error: str, requeue: bool) -> None:
        self.apply_job(
            index, job.FailJob(fencing_token=self.token(index, delta), error=error, at=self.now)
        )
        if requeue and self.jobs[JOB_IDS[index]].status is JobStatus.FAILED:
            # Its owner runs it again at once (failed jobs are rare: this is how most are).
            self.apply_job(index, job.RequeueJob(by="alice", max_attempts=1, at=self.now))

    @rule(index=job_index, by=st.sampled_from(["alice", ""]), attempts=st.integers(0, 2))
    def requeue_job(self, index: int, by: str, attempts: int) -> None:
        self.apply_job(index, job.RequeueJob(by=by, max_attempts=attempts, at=self.now))

    @rule(index=job_index, by=st.sampled_from(["alice", ""]))
    def request_cancel(self, index: int, by: str) -> None:
        self.apply_job(index, job.RequestCancel(by=by, at=self.now))

    @rule(index=job_index, delta=token_delta)
    def acknowledge_cancel(self, index: int, delta: int) -> None:
        self.apply_job(
            index, job.AcknowledgeCancel(fencing_token=self.token(index, delta), at=self.now)
        )

    @rule(index=job_index, wait_for_expiry=st.booleans(), with_token=st.booleans())
    def expire_lease(self, index: int, wait_for_expiry: bool, with_token: bool) -> None:
        state = self.jobs[JOB_IDS[index]]
        if wait_for_expiry and state.lease_expires_at is not None:
            self.now = max(self.now, state.lease_expires_at)
        token = state.fencing_token if with_token else None
        self.apply_job(index, job.ExpireLease(fencing_token=token, at=self.now))

    @rule(index=job_index, now=st.booleans(), by=st.sampled_from(["alice", "alice", ""]))
    def pause_job(self, index: int, now: bool, by: str) -> None:
        self.apply_job(index, job.PauseJob(by=by, now=now, at=self.now))

    @rule(index=job_index, by=st.sampled_from(["alice", "alice", ""]))
    def resume_job(self, index: int, by: str) -> None:
        self.apply_job(index, job.ResumeJob(by=by, at=self.now))

    @rule(index=job_index, reason=st.sampled_from(["no online worker offers llm", "", "x" * 20]))
    def a_reaper_says_the_job_waits(self, index: int, reason: str) -> None:
        self.apply_job(index, job.MarkWaiting(reason=reason, capabilities=("llm",), at=self.now))

    @rule(index=job_index, delta=token_delta)
    def acknowledge_pause(self, index: int, delta: int) -> None:
        self.apply_job(
            index, job.AcknowledgePause(fencing_token=self.token(index, delta), at=self.now)
        )

    def live_jobs(self) -> list[int]:
        return [
            index
            for index, job_id in enumerate(JOB_IDS)
            if self.jobs[job_id].exists and not self.jobs[job_id].is_terminal
        ]

    def next_step(self, state: job.JobState, pick: int) -> job.Command:
        """What a well-behaved worker (or the reaper) does next with a live job."""
        if state.status is JobStatus.QUEUED:
            if state.not_before is not None:
                self.now = max(self.now, state.not_before)
            return job.ClaimJob(worker_id="w1", lease_s=30.0, at=self.now)
        if state.status is JobStatus.PAUSED:
            return job.ResumeJob(by="alice", at=self.now)  # its owner, after a while
        assert state.lease_expires_at is not None
        if self.now >= state.lease_expires_at:
            return job.ExpireLease(at=self.now)
        token = state.fencing_token
        if state.cancel_requested:
            return job.AcknowledgeCancel(fencing_token=token, at=self.now)
        if (running := state.running_phase) is not None:
            phase = running.name
            if pick >= 8 and not state.pause_requested:  # meanwhile its owner pauses it
                return job.PauseJob(by="alice", now=pick == 9, at=self.now)
            match pick % 5:
                case 0:
                    lines = ("compiling", "done")
                    return job.RecordOutput(
                        fencing_token=token,
                        phase=phase,
                        stream=OutputStream.STDOUT,
                        lines=lines,
                        at=self.now,
                    )
                case 1:
                    return job.RecordCost(
                        fencing_token=token, phase=phase, tokens=120, usd=0.375, at=self.now
                    )
                case 2:
                    return job.RecordFile(
                        fencing_token=token,
                        phase=phase,
                        path="out.txt",
                        size=3,
                        sha256=SHA,
                        at=self.now,
                    )
                case _:
                    return job.CompletePhase(fencing_token=token, phase=phase, at=self.now)
        if state.pause_requested:
            return job.AcknowledgePause(fencing_token=token, at=self.now)
        if (upcoming := state.next_phase) is not None:
            return job.StartPhase(fencing_token=token, phase=upcoming.name, at=self.now)
        return job.CompleteJob(fencing_token=token, at=self.now)

    # Two identical rules weigh the well-behaved path double among the many random ones.
    @precondition(lambda self: bool(self.live_jobs()))
    @rule(pick=st.integers(0, 9))
    def a_worker_takes_the_next_step(self, pick: int) -> None:
        live = self.live_jobs()
        index = live[pick % len(live)]
        self.apply_job(index, self.next_step(self.jobs[JOB_IDS[index]], pick))

    @precondition(lambda self: bool(self.live_jobs()))
    @rule(pick=st.integers(0, 9))
    def another_worker_takes_the_next_step(self, pick: int) -> None:
        self.a_worker_takes_the_next_step(pick)

    def mid_phase_jobs(self) -> list[int]:
        return [i for i in self.live_jobs() if self.jobs[JOB_IDS[i]].running_phase is not None]

    @precondition(lambda self: bool(self.mid_phase_jobs()))
    @rule(pick=st.integers(0, 9), now=st.sampled_from([False, False, True]))
    def the_owner_pauses_a_job_mid_phase(self, pick: int, now: bool) -> None:
        busy = self.mid_phase_jobs()
        self.apply_job(busy[pick % len(busy)], job.PauseJob(by="alice", now=now, at=self.now))

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def the_project_is_its_folded_history(self) -> None:
        assert project.fold(self.project_history) == self.project

    @invariant()
    def every_job_is_its_folded_history(self) -> None:
        for job_id, state in self.jobs.items():
            assert job.fold(self.job_histories[job_id]) == state

    @invariant()
    def jobs_keep_their_bounds(self) -> None:
        for job_id, state in self.jobs.items():
            if not state.exists:
                continue
            assert state.status is not None
            # Claims that ended in a pause are not lost attempts.
            assert 0 <= state.attempt - state.paused_attempts <= state.max_attempts
            assert 0 <= state.paused_attempts <= state.attempt
            assert 0 <= state.progress <= 100
            assert state.fencing_token == len(self.job_tokens[job_id])
            assert state.cost_tokens >= 0
            assert state.cost_usd >= 0
            running = [p for p in state.phases if p.status is PhaseStatus.RUNNING]
            assert len(running) <= 1
            codes = "".join(_CODES[p.status] for p in state.phases)
            assert _PATTERNS[state.status].match(codes), (state.status, codes)
            if state.status is JobStatus.RUNNING:
                assert state.lease_expires_at is not None
                assert state.worker_id is not None
            if state.is_terminal:
                assert state.lease_expires_at is None
                assert state.finished_at is not None
            if state.pause_requested and not state.is_terminal:
                assert state.status is JobStatus.RUNNING
            if state.status is JobStatus.PAUSED:
                assert state.lease_expires_at is None and state.worker_id is None
                assert not state.pause_requested and not state.cancel_requested

    @invariant()
    def a_pause_can_be_resumed_until_the_job_ends(self) -> None:
        for state in self.jobs.values():
            if state.is_terminal or not (state.status is JobStatus.PAUSED or state.pause_requested):
                continue
            events = job.decide(state, job.ResumeJob(by="alice", at=self.now))
            assert [type(e) for e in events] == [job.JobResumed]
            resumed = job.fold(events, state)
            assert not resumed.pause_requested
            expected = JobStatus.QUEUED if state.status is JobStatus.PAUSED else state.status
            assert resumed.status is expected
            if resumed.status is JobStatus.QUEUED:
                claimed = job.decide(resumed, job.ClaimJob(worker_id="w2", at=self.now))
                assert any(isinstance(e, job.JobClaimed) for e in claimed)

    @invariant()
    def a_job_says_it_waits_once_per_wait_and_only_while_queued(self) -> None:
        for job_id, state in self.jobs.items():
            if state.waiting is not None:
                assert state.status is JobStatus.QUEUED
            said = False
            for event in self.job_histories[job_id]:
                if isinstance(event, job.JobWaiting):
                    assert not said, "job.waiting twice in one wait"
                    said = True
                elif isinstance(event, job.JobClaimed | job.JobPaused):
                    said = False
            if state.status is not JobStatus.QUEUED or state.cancel_requested:
                continue
            mark = job.MarkWaiting(reason="nobody offers llm", capabilities=("llm",), at=self.now)
            events = job.decide(state, mark)
            assert [type(e) for e in events] == ([] if said else [job.JobWaiting])
            assert job.decide(job.fold(events, state), mark) == [], "said once, not again"

    @invariant()
    def a_paused_job_is_cancelled_at_once(self) -> None:
        for state in self.jobs.values():
            if state.status is not JobStatus.PAUSED:
                continue
            events = job.decide(state, job.RequestCancel(by="alice", at=self.now))
            cancelled = job.fold(events, state)
            assert cancelled.status is JobStatus.CANCELLED
            assert all(p.status is not PhaseStatus.PENDING for p in cancelled.phases)
            worker_report = job.StartPhase(
                fencing_token=state.fencing_token, phase=state.phases[0].name, at=self.now
            )
            try:
                job.decide(state, worker_report)
            except InvalidTransition as refused:
                assert refused.details["reason"] == "stale_fencing_token"
            else:
                raise AssertionError("a paused job took a report from its old worker")


DomainMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestDomainStateful = DomainMachine.TestCase
