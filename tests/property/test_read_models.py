"""Random command sequences through the services: the read models always equal a fold of the
stored events, and rebuilt projections equal the inline ones row for row."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job, project
from helix.domain.job import JobState, OutputStream, PhaseStatus
from helix.domain.project import MessageRole, PhaseSpec, ProjectState
from helix.errors import HelixError
from helix.services import Caller, JobService, ProjectService, WorkerService, Writer
from projections import registry
from projections.rebuild import rebuild
from projections.runner import run_batch
from projections.seen import to_json
from tests.support import REAPER, RegisteredWorker, settled

USERS = (
    Caller(user_id="u1", name="ann", actor="user:u1"),
    Caller(user_id="u2", name="ben", actor="user:u2"),
)
PLANS = (
    (PhaseSpec(name="plan"),),
    (PhaseSpec(name="plan"), PhaseSpec(name="build", command=("make",)), PhaseSpec(name="test")),
    # No worker of the model offers `review`: its jobs wait, and are said to.
    (PhaseSpec(name="review"),),
)
READ_TABLES = [t for p in registry.DOMAIN for t in p.tables]
RUNNING = job.JobStatus.RUNNING
OWNERS = {who.user_id: who for who in USERS}
LEASE_S = 90

slot = st.integers(0, 1)
# A job command picks its job: one the worker holds, or (to cancel) a slot's latest one.
job_commands = st.tuples(
    st.just("job"),
    st.integers(0, 3),
    st.sampled_from(
        ["advance"] * 14
        + [
            "claim",
            "start",
            "output",
            "cost",
            "resources",
            "file",
            "complete_phase",
            "complete_phase",
            "fail_phase",
            "complete",
            "fail",
            "cancel",
            "cancel",
            "requeue",
            "requeue",
            "ack",
            "expire",
            "skip",
            "waiting",
            "waiting",
        ]
    ),
)
BY_KIND: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "create": st.tuples(st.just("create"), slot, st.integers(0, 1), st.booleans()),
    # Create (if needed), make ready and execute: most programs get a job to drive.
    "run": st.tuples(st.just("run"), slot, st.integers(0, 2)),
    "message": st.tuples(
        st.just("message"), slot, st.sampled_from(list(MessageRole)), st.sampled_from(["hi", " "])
    ),
    "update": st.tuples(
        st.just("update"), slot, st.sampled_from(["renamed", "", None]), st.booleans()
    ),
    "plan": st.tuples(st.just("plan"), slot, st.integers(0, 1)),
    "project": st.tuples(st.just("project"), slot, st.sampled_from(
        ["ready", "execute", "execute_from", "pause", "pause_now", "resume", "cancel",
         "archive", "unarchive"])),
    "job": job_commands,
    "tick": st.tuples(st.just("tick"), st.integers(1, 60)),
}  # fmt: skip
# Job commands are most of a program: a run has many steps.
KINDS = ["create", "run", "run", "message", "update", "plan", "project", "tick", *["job"] * 10]
operations = st.sampled_from(KINDS).flatmap(lambda kind: BY_KIND[kind])


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


class Model:
    """Drives the services as the API does, with one registered worker for every job; remembers
    the project in each slot and the jobs the worker holds."""

    def __init__(self, node: LogNode) -> None:
        self.clock = Clock()
        writer = Writer(node.store, now=self.clock)
        config = Settings(max_projects_per_user=3, max_concurrent_jobs=2)
        self.projects = ProjectService(writer, config)
        self.jobs = JobService(writer, config)
        self.workers = WorkerService(writer, config)
        self.worker: RegisteredWorker | None = None
        self.slots: dict[int, uuid.UUID] = {}
        self.owner: dict[int, Caller] = {}
        # The jobs the worker claimed and may still hold, the latest claim first.
        self.held: list[uuid.UUID] = []
        # What the program did that the log alone does not show, for the statistics.
        self.saw: set[str] = set()

    async def start(self) -> None:
        self.worker = await RegisteredWorker.register(self.workers)

    async def run(self, op: tuple[Any, ...]) -> None:
        # Refused commands must change nothing, which the comparison checks.
        with contextlib.suppress(HelixError):
            await self._run(op)

    async def _latest(self, slot: int) -> JobState | None:
        pid = self.slots.get(slot)
        if pid is None:
            return None
        state = await self._project(pid)
        if state.latest_job_id is None:
            return None
        return await self._job(state.latest_job_id)

    async def _project(self, pid: uuid.UUID) -> ProjectState:
        events = await self.projects.writer.store.read_stream(project.stream_id(pid))
        return project.fold(self.projects.writer.store.decode(e) for e in events)

    async def _job(self, jid: uuid.UUID) -> JobState:
        events = await self.jobs.writer.store.read_stream(job.stream_id(jid))
        return job.fold(self.jobs.writer.store.decode(e) for e in events)

    async def _run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "tick":
            self.clock.at += timedelta(seconds=op[1])
            return
        if kind == "job":
            await self._job_command(op[1], op[2])
            return
        slot = op[1]
        if kind == "run":
            if slot not in self.slots:
                who = USERS[op[2] % 2]
                plan = PLANS[op[2]]  # ann's runs have one phase (one waits), ben's three
                state = await self.projects.create(who, name=f"p{slot}", phases=plan)
                assert state.id is not None
                self.slots[slot], self.owner[slot] = state.id, who
            for step in ("ready", "execute"):
                with contextlib.suppress(HelixError):
                    await self._project_command(self.owner[slot], self.slots[slot], step)
            return
        if kind == "create":
            who = USERS[op[2]]
            state = await self.projects.create(
                who,
                name=f"p{slot}",
                phases=PLANS[1] if op[3] else (),
                max_job_duration=600.0 if op[3] else None,
            )
            assert state.id is not None
            self.slots[slot], self.owner[slot] = state.id, who
            return
        pid = self.slots.get(slot)
        if pid is None:
            return
        who = self.owner[slot]
        if kind == "message":
            await self.projects.post_message(who, pid, content=op[3], role=op[2])
        elif kind == "update":
            await self.projects.update(
                who,
                pid,
                name=op[2],
                description="d" if op[3] else None,
                max_job_duration=0 if op[3] else 90.0,
            )
        elif kind == "plan":
            await self.projects.update(who, pid, phases=PLANS[op[2]])
        elif kind == "project":
            await self._project_command(who, pid, op[2])

    async def _project_command(self, who: Caller, pid: uuid.UUID, name: str) -> None:
        service = self.projects
        match name:
            case "ready":
                await service.mark_ready(who, pid)
            case "execute":
                await service.execute(who, pid, model="m")
            case "execute_from":
                await service.execute(who, pid, start_phase="build")
            case "pause":
                await service.pause(who, pid)
            case "pause_now":
                await service.pause(who, pid, now=True)
            case "resume":
                await service.resume(who, pid)
            case "cancel":
                await service.cancel(who, pid)
            case "archive":
                await service.archive(who, pid)
            case "unarchive":
                await service.unarchive(who, pid)

    async def _target(self, pick: int, name: str) -> JobState | None:
        """The job a job command acts on. A worker's steps follow the jobs it holds (a claim
        takes whichever job is the oldest it may take, so the steps act on what it got); the
        owner's cancel picks among those and a slot's latest job, queued ones included."""
        held = [s for s in [await self._job(jid) for jid in self.held] if s.status is RUNNING]
        self.held = [s.id for s in held if s.id is not None]
        candidates = list(held)
        if name == "cancel" or not held:
            latest = await self._latest(pick % 2)
            if latest is not None and latest.id not in self.held:
                candidates.append(latest)
        return candidates[pick % len(candidates)] if candidates else None

    async def _job_command(self, pick: int, name: str) -> None:
        assert self.worker is not None
        if name == "waiting":
            # A reaper's round: a queued job no online worker can take says so, once.
            latest = await self._latest(pick % 2)
            job_id = latest.id if latest is not None else None
            if job_id is not None and await self.jobs.mark_waiting(REAPER, job_id):
                self.saw.add("a job was said to be waiting")
            return
        if name == "requeue":
            # Its owner runs a failed job again: a slot's latest job, if it failed.
            failed = [s for s in [await self._latest(n % 2) for n in (pick, pick + 1)] if s]
            failed = [s for s in failed if s.status is job.JobStatus.FAILED]
            if failed and failed[0].id is not None:
                await self.jobs.requeue(OWNERS[failed[0].owner], failed[0].id)
                self.saw.add("a failed job was requeued")
            return
        state = await self._target(pick, name)
        if name == "advance":
            name = "claim" if state is None or not self.held else self._next_step(state)
        if name == "claim":
            # Like a worker, it gets the oldest job it may take, and follows that one.
            claimed = await self.worker.claim(lease_s=LEASE_S)
            if claimed is None:
                self.saw.add("a claim found no job it could take")
            elif claimed.id is not None and claimed.id not in self.held:
                self.held.insert(0, claimed.id)
                if len(self.held) > 1:
                    self.saw.add("the worker held two jobs at once")
            return
        if state is None or state.id is None:
            return
        jid, token, at = state.id, state.fencing_token, self.clock()
        phase = state.running_phase or state.next_phase
        phase_name = phase.name if phase else "plan"
        command: job.WorkerReport
        match name:
            case "cancel":
                await self.jobs.cancel(OWNERS[state.owner], jid)
                return
            case "expire":
                # The worker went silent: once its lease ran out, the reaper expires it.
                if state.lease_expires_at is not None and state.lease_expires_at > at:
                    self.clock.at = state.lease_expires_at
                await self.jobs.expire_lease(REAPER, jid, token)
                return
            case "start":
                command = job.StartPhase(fencing_token=token, phase=phase_name, at=at)
            case "skip":
                command = job.SkipPhase(fencing_token=token, phase=phase_name, reason="n/a", at=at)
            case "output":
                command = job.RecordOutput(
                    fencing_token=token, phase=phase_name, stream=OutputStream.STDOUT,
                    lines=("a", "b"), at=at,
                )  # fmt: skip
            case "cost":
                command = job.RecordCost(
                    fencing_token=token, phase=phase_name, tokens=7, usd=0.1, at=at
                )
            case "resources":
                # Figures that differ from report to report: each replaces the one before.
                n = int(at.timestamp()) % 1000
                used = job.Resources(
                    cpu_s=n / 8, max_rss_bytes=n * 4096, read_bytes=n, write_bytes=2 * n
                )
                command = job.RecordResources(
                    fencing_token=token, phase=phase_name, used=used, at=at
                )
            case "file":
                command = job.RecordFile(
                    fencing_token=token, phase=phase_name, path="f.txt", size=1, sha256="a" * 64,
                    change=job.FileChange.MODIFIED, at=at,
                )  # fmt: skip
            case "complete_phase":
                command = job.CompletePhase(fencing_token=token, phase=phase_name, at=at)
            case "fail_phase":
                command = job.FailPhase(fencing_token=token, phase=phase_name, error="x", at=at)
            case "complete":
                command = job.CompleteJob(fencing_token=token, at=at)
            case "fail":
                command = job.FailJob(fencing_token=token, error="gave up", at=at)
            case "ack_pause":
                command = job.AcknowledgePause(fencing_token=token, at=at)
            case _:
                command = job.AcknowledgeCancel(fencing_token=token, at=at)
        await self.worker.report(jid, command)

    @staticmethod
    def _next_step(state: JobState) -> str:
        """What a well-behaved worker would do next."""
        if state.status is job.JobStatus.QUEUED:
            return "claim"
        if state.cancel_requested:
            return "ack"
        if any(p.status is PhaseStatus.FAILED for p in state.phases):
            return "fail"
        running = state.running_phase
        if running is not None:
            return "output" if running.output_lines == 0 else "complete_phase"
        if state.pause_requested:
            return "ack_pause"
        return "start" if state.next_phase is not None else "complete"


# --- the fold and the comparison --------------------------------------------------------------


def project_row(state: ProjectState, version: int) -> dict[str, Any]:
    return {
        "project_id": state.id,
        "name": state.name,
        "description": state.description,
        "project_type": state.project_type,
        "owner": state.owner,
        "status": state.status.value if state.status else None,
        "archived": state.archived,
        "phases": to_json(list(state.phases)),
        "latest_job_id": state.latest_job_id,
        "message_count": len(state.messages),
        "max_job_duration_s": state.max_job_duration_s,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "version": version,
    }


def job_row(state: JobState, version: int, events: list[Any]) -> dict[str, Any]:
    names = [
        "project_id", "owner", "start_phase", "model", "requested_by", "worker_id",
        "fencing_token", "lease_expires_at", "attempt", "max_attempts", "max_duration_s",
        "not_before", "progress",
        "cost_tokens", "cost_usd", "error", "cancel_requested", "cancel_reason", "dead_lettered",
        "created_at", "started_at", "finished_at", "updated_at", "pause_requested",
    ]  # fmt: skip
    row = {name: getattr(state, name) for name in names}
    row.update(job_id=state.id, status=state.status.value if state.status else None)
    row.update(version=version, priority=state.priority.rank)
    said = [e.at for e in events if isinstance(e, job.JobWaiting)]
    row["waiting_since"] = said[-1] if state.waiting is not None else None
    return row


def phase_rows(state: JobState) -> list[dict[str, Any]]:
    return [
        {
            "job_id": state.id,
            "ordinal": n,
            "name": p.name,
            "command": to_json(p.command),
            "timeout_s": p.timeout_s,
            "capabilities": to_json(p.capabilities),
            "env": p.env,
            "status": p.status.value,
            "started_at": p.started_at,
            "finished_at": p.finished_at,
            "output_lines": p.output_lines,
            "files": [f.fields() for f in p.files],
            "cost_tokens": p.cost_tokens,
            "cost_usd": p.cost_usd,
            "exit_code": p.exit_code,
            "error": p.error,
            "skip_reason": p.skip_reason,
            **(
                p.resources.fields()
                if p.resources is not None
                else dict.fromkeys(("cpu_s", "max_rss_bytes", "read_bytes", "write_bytes"))
            ),
        }
        for n, p in enumerate(state.phases, start=1)
    ]


def normal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON lists for tuples, so that folded and stored values compare equal."""
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()} for r in rows]


async def rows(pool: asyncpg.Pool, query: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(query, *args)]


async def assert_read_models_equal_the_fold(node: LogNode) -> None:
    store, pool = node.store, node.store.pool
    # Each owner's kept running count is the number of its jobs running.
    kept = await rows(pool, "SELECT owner, running FROM job_owners WHERE running <> 0")
    counted = await rows(
        pool,
        "SELECT owner, count(*) AS running FROM jobs WHERE status = 'running' GROUP BY owner",
    )
    assert sorted(kept, key=str) == sorted(counted, key=str)
    for (stream_id,) in await pool.fetch("SELECT stream_id FROM streams ORDER BY stream_id"):
        recorded = await store.read_stream(stream_id)
        events = [store.decode(e) for e in recorded]
        version = recorded[-1].version
        if stream_id.startswith("project-"):
            state = project.fold(events)
            stored = await rows(pool, "SELECT * FROM projects WHERE project_id = $1", state.id)
            assert normal(stored) == normal([project_row(state, version)])
            messages = await rows(
                pool,
                "SELECT message_id, seq, role, author, content, at FROM project_messages "
                "WHERE project_id = $1 ORDER BY seq",
                state.id,
            )
            assert messages == [
                {"message_id": m.message_id, "seq": n, "role": m.role.value, "author": m.author,
                 "content": m.content, "at": m.at}
                for n, m in enumerate(state.messages, start=1)
            ]  # fmt: skip
        elif stream_id.startswith("job-"):
            jstate = job.fold(events)
            stored = await rows(pool, "SELECT * FROM jobs WHERE job_id = $1", jstate.id)
            assert stored == [job_row(jstate, version, events)]
            phases = await rows(
                pool, "SELECT * FROM job_phases WHERE job_id = $1 ORDER BY ordinal", jstate.id
            )
            # Each phase row carries the version of the last event that changed it, which the
            # rebuild comparison checks; the fold has no such thing.
            assert all(p.pop("version") <= version for p in phases)
            assert normal(phases) == normal(phase_rows(jstate))
            lines = await rows(
                pool,
                "SELECT phase, line_no, line FROM job_output_lines WHERE job_id = $1 ORDER BY seq",
                jstate.id,
            )
            expected = [
                {"phase": e.phase, "line_no": e.first_line_no + i, "line": line}
                for e in events if isinstance(e, job.JobPhaseOutput)
                for i, line in enumerate(e.lines)
            ]  # fmt: skip
            assert lines == expected
            assert not (jstate.is_terminal and any(
                p.status in (PhaseStatus.PENDING, PhaseStatus.RUNNING) for p in jstate.phases
            ))  # fmt: skip


async def label_coverage(pool: asyncpg.Pool, saw: set[str]) -> None:
    """Name, for `--hypothesis-show-statistics`, the states the program left its jobs in and
    the transitions its log holds."""
    ended = await pool.fetch(
        "SELECT DISTINCT status, fencing_token > 0 AS claimed, dead_lettered FROM jobs"
    )
    for row in ended:
        event(f"a job ended {row['status']}")
        if row["claimed"] and row["status"] != "queued":
            event(f"a job ended {row['status']} after a claim")
        if row["dead_lettered"]:
            event("a job ended dead-lettered")
    for (kind,) in await pool.fetch("SELECT DISTINCT type FROM events WHERE type LIKE 'job.%'"):
        event(f"the log has {kind}")
    for label in saw:
        event(label)


async def dump(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    return {t: await rows(pool, f"SELECT * FROM {t} ORDER BY 1, 2") for t in READ_TABLES}


async def reset(pool: asyncpg.Pool) -> None:
    # The sequencer's head stays: new events simply continue the log's positions.
    tables = ", ".join(["events", "streams", "projection_checkpoints", *READ_TABLES])
    await pool.execute(f"TRUNCATE {tables}")


# Each example drives its jobs to several ends (claimed, failed, cancelled, completed), so a
# score of them covers the job states.
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Every program starts with a run on slot 0, so that every example drives at least one job.
@given(
    program=st.lists(operations, min_size=15, max_size=40).map(lambda ops: [("run", 0, 0), *ops])
)
async def test_read_models_equal_the_fold_and_rebuilds_equal_the_inline_ones(
    node: LogNode, program: list[tuple[Any, ...]]
) -> None:
    pool = node.store.pool
    await reset(pool)
    model = Model(node)
    await model.start()
    for op in program:
        await model.run(op)

    await assert_read_models_equal_the_fold(node)
    await label_coverage(pool, model.saw)

    await settled(node)
    inline = await dump(pool)
    # Everything was applied inline: the runner reads every event and applies none.
    # Everything was applied inline: the runner reads every event and applies none, but for
    # those of a job with no phases, which leave no row to carry their version (and change
    # nothing when met again).
    batches = [await run_batch(node.store, p, batch_size=100_000) for p in registry.DOMAIN]
    unrecorded = await pool.fetchval(
        "SELECT count(*) FROM events e WHERE e.type = ANY ($1::text[]) AND NOT EXISTS "
        "(SELECT 1 FROM job_phases p WHERE 'job-' || p.job_id = e.stream_id)",
        sorted(registry.get("phases").event_types),
    )
    assert sum(b.read for b in batches) > 0
    assert {p.name: b.applied for p, b in zip(registry.DOMAIN, batches, strict=True)} == {
        p.name: unrecorded if p.name == "phases" else 0 for p in registry.DOMAIN
    }
    assert await dump(pool) == inline
    # Rebuilt in small pages (state carried from page to page) and in one (every write of a
    # stream in one bulk replay).
    for batch_size in (7, 100_000):
        for projection in registry.DOMAIN:
            await rebuild(node.store, projection, batch_size=batch_size)
        assert await dump(pool) == inline
