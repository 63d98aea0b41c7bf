"""Time travel over random histories: a project or job `as_of` any position (or any event's
instant) is the state folded from its events up to that point, and equals the state its command
handler returned when that point was the present."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from helix.audit.time_travel import AsOf, job_as_of, job_at, project_as_of, project_at
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain import job, project
from helix.domain.job import JobState, OutputStream
from helix.domain.project import PhaseSpec, ProjectState
from helix.errors import HelixError
from helix.eventstore import RecordedEvent
from helix.services import Caller, JobService, ProjectService, WorkerService, Writer
from tests.support import REAPER, RegisteredWorker, settled

AUDITOR = Caller(user_id="auditor", name="auditor", actor="user:auditor", sees_everything=True)
PROJECT_OPS = ["message", "update", "plan", "ready", "execute", "pause", "resume", "cancel"]
JOB_OPS = [
    "claim", "start", "output", "cost", "resources", "complete_phase", "fail_phase", "complete",
]  # fmt: skip
OPS = [*PROJECT_OPS, *JOB_OPS * 3, "fail", "job_cancel", "ack", "expire", "tick", "archive"]


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


class Driver:
    """Runs one random history of one project, remembering each state a command returned."""

    def __init__(self, node: LogNode) -> None:
        self.clock = Clock()
        writer = Writer(node.store, now=self.clock)
        self.projects = ProjectService(writer, Settings())
        self.jobs = JobService(writer, Settings())
        self.workers = WorkerService(writer, Settings())
        self.worker: RegisteredWorker | None = None
        user = uuid.uuid4().hex[:8]
        self.owner = Caller(user_id=f"u-{user}", name=user, actor=f"user:u-{user}")
        # The examples share a database: a capability of its own keeps this driver's worker to
        # this driver's jobs (a worker claims the oldest job it may take).
        self.capability = f"cap-{user}"
        self.plan = (
            PhaseSpec(name="plan", capabilities=(self.capability,)),
            PhaseSpec(name="build", command=("make",), capabilities=(self.capability,)),
        )
        self.project_id: uuid.UUID | None = None
        self.job: JobState | None = None
        self.store = node.store
        # (stream id, the stream's version just after, the state the handler returned)
        self.returned: list[tuple[str, int, ProjectState | JobState]] = []

    async def _saw(self, state: ProjectState | JobState) -> None:
        assert state.id is not None
        if isinstance(state, ProjectState):
            stream_id = project.stream_id(state.id)
        else:
            self.job = state
            stream_id = job.stream_id(state.id)
        self.returned.append((stream_id, await self.store.stream_version(stream_id), state))

    async def create(self) -> None:
        self.worker = await RegisteredWorker.register(self.workers, capabilities=[self.capability])
        state = await self.projects.create(self.owner, name="p", phases=self.plan)
        self.project_id = state.id
        await self._saw(state)

    async def run(self, op: str) -> None:
        with contextlib.suppress(HelixError):
            await self._run(op)

    async def _run(self, op: str) -> None:
        pid, who, service = self.project_id, self.owner, self.projects
        assert pid is not None
        if op == "tick":
            self.clock.at += timedelta(seconds=120)
        elif op == "message":
            await self._saw(await service.post_message(who, pid, content="hello"))
        elif op == "update":
            await self._saw(await service.update(who, pid, name=f"p{self.clock().second}"))
        elif op == "plan":
            await self._saw(await service.update(who, pid, phases=self.plan[:1]))
        elif op == "ready":
            await self._saw(await service.mark_ready(who, pid))
        elif op in ("execute", "cancel"):
            run = await (service.execute(who, pid) if op == "execute" else service.cancel(who, pid))
            await self._saw(run.project)
            await self._saw(run.job)
        elif op in ("pause", "resume", "archive"):
            await self._saw(await getattr(service, op)(who, pid))
        elif self.job is not None:
            await self._job(op, self.job)

    async def _job(self, op: str, state: JobState) -> None:
        assert state.id is not None
        jid, token, at = state.id, state.fencing_token, self.clock()
        phase = state.running_phase or state.next_phase
        name = phase.name if phase is not None else "plan"
        command: job.WorkerReport
        assert self.worker is not None
        match op:
            case "claim":
                claimed = await self.worker.claim(lease_s=90)
                if claimed is not None:
                    await self._saw(claimed)
                return
            case "job_cancel":
                await self._saw(await self.jobs.cancel(self.owner, jid))
                return
            case "expire":
                # Expired as the reaper does, once the lease ran out (a tick is longer).
                await self._saw(await self.jobs.expire_lease(REAPER, jid, token))
                return
            case "start":
                command = job.StartPhase(fencing_token=token, phase=name, at=at)
            case "output":
                command = job.RecordOutput(
                    fencing_token=token, phase=name, stream=OutputStream.STDOUT, lines=("x",), at=at
                )
            case "cost":
                command = job.RecordCost(fencing_token=token, phase=name, tokens=3, usd=0.5, at=at)
            case "resources":
                n = int(at.timestamp()) % 1000
                used = job.Resources(
                    cpu_s=n / 4, max_rss_bytes=n * 4096, read_bytes=n, write_bytes=n + 1
                )
                command = job.RecordResources(fencing_token=token, phase=name, used=used, at=at)
            case "complete_phase":
                command = job.CompletePhase(fencing_token=token, phase=name, at=at)
            case "fail_phase":
                command = job.FailPhase(fencing_token=token, phase=name, error="boom", at=at)
            case "complete":
                command = job.CompleteJob(fencing_token=token, at=at)
            case "fail":
                command = job.FailJob(fencing_token=token, error="gave up", at=at)
            case _:
                command = job.AcknowledgeCancel(fencing_token=token, at=at)
        await self._saw(await self.worker.report(jid, command))


def fold_up_to(
    node: LogNode, events: list[RecordedEvent], keep: Any, kind: str
) -> ProjectState | JobState | None:
    decoded = [node.store.decode(e) for e in events if keep(e)]
    state: ProjectState | JobState = (project if kind == "project" else job).fold(decoded)
    return state if state.exists else None


async def as_of(node: LogNode, stream_id: str, point: AsOf) -> ProjectState | JobState | None:
    kind, _, raw = stream_id.partition("-")
    if kind == "project":
        return await project_as_of(node.store, uuid.UUID(raw), point)
    return await job_as_of(node.store, uuid.UUID(raw), point)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    program=st.lists(st.sampled_from(OPS), min_size=10, max_size=40),
    runs_first=st.sampled_from([True, True, False]),
)
async def test_as_of_every_earlier_position_equals_the_fold_of_the_events_up_to_it(
    node: LogNode, program: list[str], runs_first: bool
) -> None:
    start = await settled(node)
    driver = Driver(node)
    await driver.create()
    prefix = ["ready", "execute", "claim", "start", "output", "cost"] if runs_first else []
    for op in [*prefix, *program]:
        await driver.run(op)
    head = await settled(node)
    assert driver.project_id is not None
    streams = [
        r["stream_id"]
        for r in await node.store.pool.fetch(
            "SELECT stream_id FROM streams WHERE project_id = $1", driver.project_id
        )
    ]
    recorded = {s: await node.store.read_stream(s) for s in streams}
    note_event(f"{len(streams) - 1} job(s)")
    note_event(f"{sum(map(len, recorded.values())) // 10 * 10}+ events")
    for row in await node.store.pool.fetch(
        "SELECT DISTINCT status FROM jobs WHERE project_id = $1", driver.project_id
    ):
        note_event(f"a job ended {row['status']}")
    for kind in {e.type for events in recorded.values() for e in events}:
        if kind in ("job.stuck", "job.retry_scheduled", "job.cancelled", "job.failed"):
            note_event(f"the log has {kind}")

    for stream_id, events in recorded.items():
        kind = stream_id.partition("-")[0]
        for position in range(start, head + 1):
            expected = fold_up_to(
                node, events, lambda e, p=position: e.position is not None and e.position <= p, kind
            )
            assert await as_of(node, stream_id, AsOf(position=position)) == expected
        for event in events:
            instant = event.recorded_at
            expected = fold_up_to(node, events, lambda e, t=instant: e.recorded_at <= t, kind)
            assert await as_of(node, stream_id, AsOf(time=instant)) == expected

    for stream_id, version, state in driver.returned:
        position = next(e.position for e in recorded[stream_id] if e.version == version)
        assert await as_of(node, stream_id, AsOf(position=position)) == state

    # The JSON renderings hold at every point the project existed. A run's project event may
    # come a position before its job's first event (one transaction): no latest job then.
    first = recorded[project.stream_id(driver.project_id)][0].position
    assert first is not None
    for position in range(first, head + 1):
        point = AsOf(position=position)
        view = await project_at(node.store, AUDITOR, driver.project_id, point)
        if view["latest_job"] is not None:
            jid = uuid.UUID(view["latest_job"]["id"])
            assert (await job_at(node.store, AUDITOR, jid, point))["status"] == view["latest_job"][
                "status"
            ]
