"""Claims against the real database: a job that waited past the priority aging first (oldest
first), then the highest priority (oldest first within it); concurrent claimers never share a
job, each one's claims keep that order, and an owner's running limit holds among them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.job import JobPriority
from helix.domain.project import PhaseSpec
from helix.services import Caller, ProjectService, WorkerService, Writer
from tests.support import RegisteredWorker

AGING_S = 60.0
BASE = datetime(2026, 1, 1, tzinfo=UTC)
CLAIMED_AT = BASE + timedelta(seconds=1000)  # a job queued at BASE + 940 s or before is aged
PLAN = (PhaseSpec(name="plan"),)

queued_jobs = st.lists(
    st.tuples(st.sampled_from(list(JobPriority)), st.integers(900, 1000)), min_size=1, max_size=9
)


class Clock:
    def __init__(self) -> None:
        self.at = BASE

    def __call__(self) -> datetime:
        return self.at


class Queue:
    """One user's jobs, each on a project of its own, queued at chosen times."""

    def __init__(self, node: LogNode, *, running_limit: int = 1000) -> None:
        self.clock = Clock()
        config = Settings(
            max_projects_per_user=1000,
            max_concurrent_jobs=running_limit,
            priority_aging_s=AGING_S,
        )
        writer = Writer(node.store, now=self.clock)
        self.projects = ProjectService(writer, config)
        self.workers = WorkerService(writer, config)
        user_id = str(uuid.uuid4())
        self.owner = Caller(user_id=user_id, name="owner", actor=f"user:{user_id}")
        # job → its place in the claim order
        self.order: dict[uuid.UUID, tuple[object, ...]] = {}

    async def queue(self, priority: JobPriority, second: int) -> None:
        self.clock.at = BASE + timedelta(seconds=second)
        state = await self.projects.create(self.owner, name=f"at {second}", phases=PLAN)
        assert state.id is not None
        await self.projects.mark_ready(self.owner, state.id)
        run = await self.projects.execute(self.owner, state.id, priority=priority)
        assert run.job.id is not None and run.job.created_at is not None
        job_id, at = run.job.id, run.job.created_at
        aged = at <= CLAIMED_AT - timedelta(seconds=AGING_S)
        self.order[job_id] = (0, at, job_id) if aged else (1, -priority.rank, at, job_id)

    async def drain(self, worker: RegisteredWorker) -> list[uuid.UUID]:
        """Claim until nothing is left; the jobs in the order this worker got them."""
        got = []
        while (claimed := await worker.claim()) is not None:
            assert claimed.id is not None
            got.append(claimed.id)
        return got

    async def claimers(self, count: int) -> list[RegisteredWorker]:
        self.clock.at = CLAIMED_AT
        return [await RegisteredWorker.register(self.workers, f"w{n}") for n in range(count)]


SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(jobs=queued_jobs)
async def test_one_claimer_takes_aged_jobs_first_then_by_priority_oldest_first(
    node: LogNode, jobs: list[tuple[JobPriority, int]]
) -> None:
    queue = Queue(node)
    for priority, second in jobs:
        await queue.queue(priority, second)
    (worker,) = await queue.claimers(1)

    got = await queue.drain(worker)

    assert got == sorted(queue.order, key=queue.order.__getitem__)


@SETTINGS
@given(jobs=queued_jobs, claimers=st.integers(2, 5))
async def test_concurrent_claimers_never_share_a_job_and_each_keeps_the_order(
    node: LogNode, jobs: list[tuple[JobPriority, int]], claimers: int
) -> None:
    queue = Queue(node)
    for priority, second in jobs:
        await queue.queue(priority, second)
    workers = await queue.claimers(claimers)

    each = await asyncio.gather(*(queue.drain(w) for w in workers))

    claimed = [job_id for got in each for job_id in got]
    assert sorted(claimed) == sorted(queue.order)  # every job once, none twice
    for got in each:
        # A claimer never gets a job that comes before one it already has: whatever it passed
        # over was being claimed by another.
        assert got == sorted(got, key=queue.order.__getitem__)


@SETTINGS
@given(jobs=queued_jobs, claimers=st.integers(2, 5), limit=st.integers(1, 3))
async def test_concurrent_claimers_keep_an_owner_under_its_running_limit(
    node: LogNode, jobs: list[tuple[JobPriority, int]], claimers: int, limit: int
) -> None:
    queue = Queue(node, running_limit=limit)
    for priority, second in jobs:
        await queue.queue(priority, second)
    workers = await queue.claimers(claimers)

    each = await asyncio.gather(*(queue.drain(w) for w in workers))

    # (Jobs an earlier example left queued, under a lower limit, may be claimed too.)
    claimed = [job_id for got in each for job_id in got if job_id in queue.order]
    assert len(claimed) == min(limit, len(jobs)) == len(set(claimed))
    assert node.pool is not None
    running = await node.pool.fetchval(
        "SELECT running FROM job_owners WHERE owner = $1", queue.owner.user_id
    )
    assert running == len(claimed)
