"""Helpers shared by the integration and property tests: fresh databases and a started node
on one, waiting for the sequencer, a worker that claims and reports through the worker service,
the path the API's worker routes take, and the processes of a process group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import attrs
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings

from helix import envelope
from helix.bootstrap import LogNode
from helix.client.sse import Parser
from helix.config import Settings
from helix.database import with_database
from helix.domain.job import JobState
from helix.domain.job.commands import WorkerReport
from helix.eventstore import EventStore, RecordedEvent
from helix.services import Caller, system_caller
from helix.services.workers import WorkerService
from helix.streams import Frame

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


def group_of(pgid: int) -> list[int]:
    """Every process of the process group `pgid` that still runs (not a zombie), from /proc."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return found


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


class FreshDatabases:
    """Fresh databases cloned from the migrated template, each used by one test (or module).

    Cloning and dropping a database costs a tenth of a second or more: a thread of its own
    clones the next test's database while a test runs and drops the last one's after it, so no
    test waits for either. (A clone holds a transaction id meanwhile; the sequencer waits only
    for append transactions, so a running test's log is not held back by it.) A database taken
    while another is in use (a second database for one test) is cloned and dropped in place."""

    def __init__(self, url: str, template: str, *, ahead: bool = True) -> None:
        self.url = url
        self.template = template
        self._admin = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._in_use = 0
        self._ready: Future[str] | None = self._admin.submit(self._clone) if ahead else None

    def _run(self, statement: str) -> None:
        asyncio.run(admin_execute(self.url, statement))

    def _clone(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._run(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return name

    def _drop(self, name: str) -> None:
        self._run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """A fresh database's URL for the block; dropped after it."""
        ahead = self._ready is not None and not self._in_use
        if ahead:
            assert self._ready is not None
            name = await asyncio.wrap_future(self._ready)
        else:
            name = await asyncio.to_thread(self._clone)
        self._in_use += 1
        try:
            yield with_database(self.url, name)
        finally:
            self._in_use -= 1
            if ahead:
                self._admin.submit(self._drop, name)
                self._ready = self._admin.submit(self._clone)
            else:
                await asyncio.to_thread(self._drop, name)

    def close(self) -> None:
        """Drop the database cloned for a test that never came."""
        if self._ready is not None:
            with contextlib.suppress(Exception):
                self._admin.submit(self._drop, self._ready.result())
        self._admin.shutdown(wait=True)


@contextlib.asynccontextmanager
async def started_node(url: str, settings: Settings) -> AsyncIterator[LogNode]:
    """Store, head watcher and sequencer on the database at `url`, stopped after the block."""
    log_node = LogNode(url, settings)
    await log_node.start()
    try:
        yield log_node
    finally:
        await log_node.stop()


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """The error of an API response that must have `status`: its envelope's `error`."""
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["request_id"]
    return dict(body["error"])


def bounded(*, examples: int) -> settings:
    """Hypothesis settings for tests against the server: the same examples on every run (no
    example database), without deadlines: a request's time depends on the machine, not on the
    input."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def frame_of(event: RecordedEvent, owner: str | None) -> Frame:
    """A stream frame of `event` without the database: its row as `EventStore.read_public`
    returns it, the public JSON rendered by `helix.envelope.public`."""
    row = {
        "position": event.position,
        "stream_id": event.stream_id,
        "project_id": event.project_id,
        "type": event.type,
        "json": json.dumps(envelope.public(event), separators=(",", ":")),
    }
    return Frame(row, owner)


async def first_sse_event(
    client: TestClient[Any, Any], headers: dict[str, str], after: int
) -> dict[str, Any]:
    """The data of the first event `/events/stream` sends after position `after`."""
    resp = await client.get(f"/api/v1/events/stream?after={after}", headers=headers)
    assert resp.status == 200, await resp.text()
    parser = Parser()
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await resp.content.readline()).decode().rstrip("\r\n")
                message = parser.feed_line(line)
                if message is not None and message.id is not None:
                    found: dict[str, Any] = json.loads(message.data)
                    return found
    finally:
        resp.close()


async def first_websocket_event(
    client: TestClient[Any, Any], headers: dict[str, str], after: int
) -> dict[str, Any]:
    """The payload of the first event a WebSocket subscription to everything after `after`
    receives."""
    ws = await client.ws_connect("/api/v1/ws", headers=headers)
    try:
        await ws.send_json(
            {"type": "subscribe", "id": "s", "payload": {"stream": "all", "after": after}}
        )
        async with asyncio.timeout(20):
            while True:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                got = json.loads(msg.data)
                if got["type"] == "event":
                    found: dict[str, Any] = got["payload"]
                    return found
    finally:
        await ws.close()
