"""Helpers shared by the integration and property tests: fresh databases and a started node
on one, waiting for the sequencer, and a worker that claims and reports through the worker
service, the path the API's worker routes take."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import asyncpg
import attrs

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import with_database
from helix.domain.job import JobState
from helix.domain.job.commands import WorkerReport
from helix.eventstore import EventStore
from helix.services import Caller, system_caller
from helix.services.workers import WorkerService

# Enough for the phases the tests plan: a command needs `shell`, a phase without one its name.
CAPABILITIES = ("shell", "plan", "build", "test", "deploy")
# Who expires the leases workers stopped renewing, as the lease reaper does.
REAPER = system_caller("reaper")


async def settled(where: LogNode | EventStore | asyncpg.Pool, timeout: float = 20) -> int:
    """Wait until the sequencer has positioned every committed event (and, for a store with a
    head watcher, until the watcher knows it); return the head."""
    store = where.store if isinstance(where, LogNode) else where
    pool = store.pool if isinstance(store, EventStore) else store
    watcher = store.head_watcher if isinstance(store, EventStore) else None
    async with asyncio.timeout(timeout):
        while True:
            if not await pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE position IS NULL)"
            ):
                head = int(await pool.fetchval("SELECT head_position FROM sequencer_state"))
                if watcher is None or watcher.head >= head:
                    return head
            await asyncio.sleep(0.01)


@attrs.frozen(kw_only=True)
class RegisteredWorker:
    """A worker registered through the worker service; it claims and reports through it."""

    service: WorkerService
    caller: Caller
    worker_id: uuid.UUID

    @classmethod
    async def register(
        cls, service: WorkerService, name: str = "w1", capabilities: Iterable[str] = CAPABILITIES
    ) -> RegisteredWorker:
        user_id = str(uuid.uuid4())
        caller = Caller(user_id=user_id, name=name, actor=f"user:{user_id}")
        row = await service.register(
            caller, name=name, hostname="test-host", capabilities=tuple(capabilities), resources={}
        )
        return cls(service=service, caller=caller, worker_id=row["worker_id"])

    async def claim(self, lease_s: float | None = None) -> JobState | None:
        """The job it claimed (the oldest it may take), or None if there was none."""
        claim = await self.service.claim(self.caller, self.worker_id, wait=0, lease_s=lease_s)
        return None if claim is None else claim.job

    async def claim_job(self, job_id: uuid.UUID, lease_s: float | None = None) -> JobState:
        """Claim, expecting to get `job_id` (the oldest job this worker may take)."""
        claimed = await self.claim(lease_s)
        assert claimed is not None, "there was no job to claim"
        assert claimed.id == job_id, f"claimed {claimed.id}, not {job_id}"
        return claimed

    async def report(self, job_id: uuid.UUID, *reports: WorkerReport) -> JobState:
        """Send reports in one request, under the fencing token the first one carries."""
        return await self.service.report(self.caller, job_id, reports[0].fencing_token, reports)

    async def report_each(self, job_id: uuid.UUID, reports: Iterable[WorkerReport]) -> JobState:
        """Send reports one request each, as a worker reporting as it goes does."""
        state = None
        for report in reports:
            state = await self.report(job_id, report)
        assert state is not None, "no reports to send"
        return state


# The tests' settings: the sequencer's slow poll shorter, wake-ups sent at once.
TEST_SETTINGS = Settings(sequencer_poll_interval=0.2, wakeup_interval=0.001)


async def admin_execute(url: str, *statements: str) -> None:
    """Run statements on their own connection (CREATE DATABASE runs in no transaction)."""
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class _Server:
    """One PostgreSQL server of the tests, with the migrated template, and the thread that
    clones and drops its databases in the background."""

    def __init__(self, url: Future[str] | str, template: str) -> None:
        self._url = url
        self.template = template
        self.admin = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self.in_use = 0
        self.ready: Future[str] | None = None

    @property
    def url(self) -> str:
        return self._url if isinstance(self._url, str) else self._url.result()

    def run(self, statement: str) -> None:
        asyncio.run(admin_execute(self.url, statement))

    def clone(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.run(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return name

    def drop(self, name: str) -> None:
        self.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class FreshDatabases:
    """Fresh databases cloned from the migrated template, each used by one test (or module).

    Cloning and dropping a database costs a tenth of a second or more, and it holds a
    transaction id meanwhile, which holds back the xmin horizon of the whole server: a
    sequencer there positions nothing until it commits. So with a spare server (one of the
    tests' own, beside the main one), the tests take turns: while a test runs on one server,
    the other drops the last test's database and clones the next test's, and no test waits for
    either or has its log held back. A database taken while another is in use (a second
    database for one test) is cloned and dropped in place, as it is with one server."""

    def __init__(self, main: str, template: str, spare: Future[str] | None = None) -> None:
        self._servers = [_Server(main, template)]
        if spare is not None:
            self._servers.append(_Server(spare, template))
            for server in self._servers:
                server.ready = server.admin.submit(server.clone)
        self._turn = 0

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """A fresh database's URL for the block; dropped after it."""
        taken = next((s for s in self._servers if s.in_use), None)
        in_turn = taken is None and len(self._servers) > 1
        if in_turn:
            server = self._servers[self._turn]
            self._turn = (self._turn + 1) % len(self._servers)
            assert server.ready is not None
            name = await asyncio.wrap_future(server.ready)
        else:
            server = taken or self._servers[0]
            name = await asyncio.to_thread(server.clone)
        server.in_use += 1
        try:
            yield with_database(server.url, name)
        finally:
            server.in_use -= 1
            if in_turn:
                server.admin.submit(server.drop, name)
                server.ready = server.admin.submit(server.clone)
            else:
                await asyncio.to_thread(server.drop, name)

    def close(self) -> None:
        """Drop the databases cloned for tests that never came."""
        for server in self._servers:
            if server.ready is not None:
                with contextlib.suppress(Exception):
                    server.admin.submit(server.drop, server.ready.result())
            server.admin.shutdown(wait=True)


@contextlib.asynccontextmanager
async def started_node(url: str, settings: Settings) -> AsyncIterator[LogNode]:
    """Store, head watcher and sequencer on the database at `url`, stopped after the block."""
    log_node = LogNode(url, settings)
    await log_node.start()
    try:
        yield log_node
    finally:
        await log_node.stop()
