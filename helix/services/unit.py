"""The unit of work of every command: load, decide, append, project inline, commit.

A `Tx` loads streams in the caller's transaction, folds them, asks the decider, appends the
events with the expected version and applies the inline projections, all in that one
transaction, so a client reads its own writes as soon as the command returns. A conflicting
append (another writer moved the stream) rolls everything back and the work runs again on a
fresh read. When a job reaches a terminal state the project's run follows in the same
transaction ("project status follows its jobs").

Nothing here NOTIFYs inside the transaction: a NOTIFY takes a database-wide lock at commit and
would serialize every writer. A unit of work that may free a claim records it, and after the
commit the store's coalesced wake-up also wakes the claimers (`helix_jobs`); they poll on a
slow timer besides, so a lost wake-up only delays a claim.

A caller with an idempotency key (`helix.services.idempotency`) has its key reserved in the
transaction before the work decides. Work that appended nothing commits (or rolls back) as
usual and leaves no record; work that appended keeps its transaction open for the caller's
`Idempotency`, which stores the response and commits (later units of work of the same request
join that transaction).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from helix.domain import job, project
from helix.domain.job import JobCancelled, JobCompleted, JobFailed, JobState
from helix.domain.job.commands import Command as JobCommand
from helix.domain.job.events import TERMINAL_EVENT_TYPES
from helix.domain.project import ProjectState
from helix.domain.project.commands import Command as ProjectCommand
from helix.domain.project.decider import MAX_REASON_CHARS
from helix.errors import ConcurrencyError, InvalidTransition, NotFound
from helix.eventstore import EventStore, RecordedEvent
from helix.eventstore.records import stream_type_of
from helix.services.caller import Caller
from projections import jobs as jobs_model
from projections.registry import apply_inline

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


# Events after which a waiting worker may find a job to claim: one was queued or is due for a
# retry, a job ended (its owner has a running slot free), a paused project resumed.
# A job queued or back for a retry can be claimed; one that ended frees a running slot.
_CLAIM_EVENTS = frozenset({"job.queued", "job.retry_scheduled"}) | TERMINAL_EVENT_TYPES


def _may_free_a_claim(event_type: str, data: dict[str, Any]) -> bool:
    if event_type in _CLAIM_EVENTS:
        return True
    return event_type == "project.status_changed" and data.get("from_status") == "paused"


class Tx:
    """One transaction's view of the aggregates it touches; each stream is read once."""

    def __init__(
        self, store: EventStore, conn: asyncpg.Connection, caller: Caller, at: datetime
    ) -> None:
        self.store = store
        self.conn = conn
        self.caller = caller
        self.at = at
        self._projects: dict[UUID, tuple[ProjectState, int]] = {}
        self._jobs: dict[UUID, tuple[JobState, int]] = {}
        self.appended = False
        self.claims_due = False  # a claimer may find a job once this commits

    async def _load(self, stream_id: str) -> tuple[list[Any], int]:
        recorded = await self.store.read_stream(stream_id, conn=self.conn)
        version = recorded[-1].version if recorded else 0
        return [self.store.decode(r) for r in recorded], version

    async def project(self, project_id: UUID) -> ProjectState:
        if project_id not in self._projects:
            events, version = await self._load(project.stream_id(project_id))
            self._projects[project_id] = (project.fold(events), version)
        return self._projects[project_id][0]

    async def job(self, job_id: UUID) -> JobState:
        if job_id not in self._jobs:
            events, version = await self._load(job.stream_id(job_id))
            self._jobs[job_id] = (job.fold(events), version)
        return self._jobs[job_id][0]

    async def visible_project(self, project_id: UUID) -> ProjectState:
        """The project if it exists and the caller may see it; 404 otherwise (also for another
        user's project, so its existence is not revealed)."""
        state = await self.project(project_id)
        if not state.exists or not self.caller.may_see(state.owner):
            raise NotFound("project not found", project_id=str(project_id))
        return state

    async def visible_job(self, job_id: UUID) -> JobState:
        state = await self.job(job_id)
        if not state.exists or not self.caller.may_see(state.owner):
            raise NotFound("job not found", job_id=str(job_id))
        return state

    async def decide_project(self, project_id: UUID, command: ProjectCommand) -> ProjectState:
        state = await self.project(project_id)
        version = self._projects[project_id][1]
        events = project.decide(state, command)
        if not events:
            return state
        appended = await self._append(project.stream_id(project_id), version, events, project_id)
        state = project.fold(events, state)
        self._projects[project_id] = (state, appended)
        return state

    async def decide_job(
        self, job_id: UUID, command: JobCommand, *, project_id: UUID | None = None
    ) -> JobState:
        return await self.decide_job_all(job_id, (command,), project_id=project_id)

    async def decide_job_all(
        self, job_id: UUID, commands: Sequence[JobCommand], *, project_id: UUID | None = None
    ) -> JobState:
        """Decide the commands in order, each on the state the previous ones left, and append
        all their events at once: all of them are accepted, or none."""
        before = await self.job(job_id)
        version = self._jobs[job_id][1]
        events: list[job.Event] = []
        state = before
        for command in commands:
            caused = job.decide(state, command)
            state = job.fold(caused, state)
            events += caused
        if not events:
            return before
        owner_project = before.project_id or project_id
        appended = await self._append(job.stream_id(job_id), version, events, owner_project)
        after = job.fold(events, before)
        self._jobs[job_id] = (after, appended)
        if after.is_terminal and not before.is_terminal:
            await self._run_follows_job(after, events[-1])
        return after

    async def _run_follows_job(self, state: JobState, final: object) -> None:
        assert state.id is not None and state.project_id is not None
        command: ProjectCommand
        match final:
            case JobCompleted():
                command = project.FinishRun(job_id=state.id, succeeded=True, at=self.at)
            case JobFailed():
                reason = (state.error or "run failed")[:MAX_REASON_CHARS]
                command = project.FinishRun(
                    job_id=state.id, succeeded=False, reason=reason, at=self.at
                )
            case JobCancelled():
                command = project.CancelRun(job_id=state.id, at=self.at)
            case _:
                return
        try:
            await self.decide_project(state.project_id, command)
        except InvalidTransition as refused:
            # The project moved on (another run, archived): the job's end stands on its own.
            log.info("project %s does not follow job %s: %s", state.project_id, state.id, refused)

    async def append_events(self, stream_id: str, expected: int, events: Sequence[object]) -> int:
        """Append events of an aggregate that has no decider here (workers), with no project."""
        return await self._append(stream_id, expected, events, None)

    async def _append(
        self, stream_id: str, expected: int, events: Sequence[object], project_id: UUID | None
    ) -> int:
        encoded = [self.store.registry.encode(e) for e in events]
        metadata = self.caller.metadata()
        appended = await self.store.append(
            stream_id, expected, encoded, metadata=metadata, project_id=project_id, conn=self.conn
        )
        recorded = [
            RecordedEvent(
                event_id=e.event_id,
                stream_id=stream_id,
                stream_type=stream_type_of(stream_id),
                version=appended.first_version + i,
                position=None,
                project_id=project_id,
                type=e.type,
                schema_version=e.schema_version,
                data=e.data,
                metadata=metadata,
                recorded_at=appended.recorded_at,
            )
            for i, e in enumerate(encoded)
        ]
        await apply_inline(self.conn, recorded)
        self.appended = True
        if any(_may_free_a_claim(e.type, e.data) for e in encoded):
            self.claims_due = True
        return appended.last_version


class Writer:
    """Runs units of work, retrying on a conflicting append or a deadlock."""

    def __init__(
        self, store: EventStore, *, now: Callable[[], datetime] = utcnow, retries: int = RETRIES
    ) -> None:
        self.store = store
        self.now = now
        self.retries = retries

    def _committed(self, tx: Tx) -> None:
        self.store.committed((jobs_model.CLAIM_CHANNEL,) if tx.claims_due else ())

    async def run(self, caller: Caller, work: Callable[[Tx], Awaitable[T]]) -> T:
        idempotency = caller.idempotency
        for attempt in range(1, self.retries + 1):
            try:
                if idempotency is not None and idempotency.conn is not None:
                    return await self._join(idempotency.conn, caller, work)
                return await self._once(caller, work)
            except (ConcurrencyError, asyncpg.DeadlockDetectedError):
                if attempt == self.retries:
                    raise
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise AssertionError("unreachable")

    async def _join(
        self, conn: asyncpg.Connection, caller: Caller, work: Callable[[Tx], Awaitable[T]]
    ) -> T:
        """A further unit of work of a request whose transaction is held open: a savepoint in
        it, so a conflict retries this work alone. Its wake-ups follow that commit."""
        assert caller.idempotency is not None
        tx = Tx(self.store, conn, caller, self.now())
        async with conn.transaction():
            result = await work(tx)
        if tx.appended:
            caller.idempotency.after_commit(lambda: self._committed(tx))
        return result

    async def _once(self, caller: Caller, work: Callable[[Tx], Awaitable[T]]) -> T:
        idempotency = caller.idempotency
        conn: asyncpg.Connection = await self.store.pool.acquire()
        held = False
        try:
            transaction = conn.transaction()
            await transaction.start()
            try:
                if idempotency is not None:
                    await idempotency.reserve(conn)
                tx = Tx(self.store, conn, caller, self.now())
                result = await work(tx)
                if idempotency is not None and tx.appended:
                    # The caller's idempotency record commits this, with the response.
                    idempotency.adopt(conn, transaction, lambda: self._committed(tx))
                    held = True
                    return result
                if idempotency is not None:
                    await idempotency.release(conn)
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
        finally:
            if not held:
                await self.store.pool.release(conn)
        if tx.appended:
            self._committed(tx)
        return result
