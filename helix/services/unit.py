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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import attrs

from helix.domain import job, project
from helix.domain.job import JobCancelled, JobCompleted, JobFailed, JobState
from helix.domain.job.commands import Command as JobCommand
from helix.domain.job.events import TERMINAL_EVENT_TYPES
from helix.domain.project import ProjectState
from helix.domain.project.commands import Command as ProjectCommand
from helix.domain.project.decider import MAX_REASON_CHARS
from helix.errors import ConcurrencyError, Conflict, InvalidTransition, NotFound
from helix.eventstore import ANY_VERSION, EventStore, RecordedEvent
from helix.eventstore.records import stream_type_of
from helix.services.caller import Caller
from projections import jobs as jobs_model
from projections.registry import apply_inline

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S")
C = TypeVar("C")
RETRIES = 10


class Contended(Conflict):
    """The work found that a concurrent commit moved what it decided on (beyond what the
    stream versions guard, e.g. a kept count): it runs again on a fresh read."""


@attrs.frozen
class Aggregate(Generic[S, C]):
    """What the unit of work needs to know of one kind of aggregate: where its stream is, how
    its events fold into a state, and its decider. `project_of` names the project a state
    belongs to (the events' denormalized `project_id`), if any."""

    name: str
    stream_id: Callable[[UUID], str]
    fold: Callable[[Iterable[Any], S], S]
    initial: S
    decide: Callable[[S, C], Sequence[object]]
    project_of: Callable[[S], UUID | None] = lambda _state: None


def utcnow() -> datetime:
    return datetime.now(UTC)


# Events after which a waiting worker may find a job to claim: one was queued, is due for a
# retry or was resumed; a job ended or paused (its owner has a running slot free); a paused
# project resumed.
_CLAIM_EVENTS = (
    frozenset({"job.queued", "job.retry_scheduled", "job.resumed", "job.paused", "job.requeued"})
    | TERMINAL_EVENT_TYPES
)


def _may_free_a_claim(event_type: str, data: dict[str, Any]) -> bool:
    if event_type in _CLAIM_EVENTS:
        return True
    return event_type == "project.status_changed" and data.get("from_status") == "paused"


PROJECT: Aggregate[ProjectState, ProjectCommand] = Aggregate(
    name="project",
    stream_id=project.stream_id,
    fold=project.fold,
    initial=project.INITIAL,
    decide=project.decide,
    project_of=lambda state: state.id,
)
JOB: Aggregate[JobState, JobCommand] = Aggregate(
    name="job",
    stream_id=job.stream_id,
    fold=job.fold,
    initial=job.INITIAL,
    decide=job.decide,
    project_of=lambda state: state.project_id,
)


class Tx:
    """One transaction's view of the aggregates it touches; each stream is read once."""

    def __init__(
        self, store: EventStore, conn: asyncpg.Connection, caller: Caller, at: datetime
    ) -> None:
        self.store = store
        self.conn = conn
        self.caller = caller
        self.at = at
        self._states: dict[tuple[str, UUID], tuple[Any, int]] = {}
        self._last_event_id: UUID | None = None
        self._last_final: object = None
        self.appended = False
        self.claims_due = False  # a claimer may find a job once this commits

    async def _load(self, stream_id: str) -> tuple[list[Any], int]:
        recorded = await self.store.read_stream(stream_id, conn=self.conn)
        version = recorded[-1].version if recorded else 0
        return [self.store.decode(r) for r in recorded], version

    async def state(self, aggregate: Aggregate[S, C], aggregate_id: UUID) -> S:
        """The aggregate's current state, read once per transaction (its initial state if its
        stream does not exist)."""
        key = (aggregate.name, aggregate_id)
        if key not in self._states:
            events, version = await self._load(aggregate.stream_id(aggregate_id))
            self._states[key] = (aggregate.fold(events, aggregate.initial), version)
        state: S = self._states[key][0]
        return state

    async def decide(
        self,
        aggregate: Aggregate[S, C],
        aggregate_id: UUID,
        *commands: C,
        causation_id: UUID | None = None,
    ) -> S:
        """Decide the commands in order, each on the state the previous ones left, and append
        all their events at once with the inline projections: all of them are accepted, or
        none (a refusal, an `InvalidTransition` or `ValidationError`, appends nothing).
        The new state."""
        before = await self.state(aggregate, aggregate_id)
        version = self._states[(aggregate.name, aggregate_id)][1]
        events: list[object] = []
        after = before
        for command in commands:
            caused = aggregate.decide(after, command)
            after = aggregate.fold(caused, after)
            events += caused
        if not events:
            return before
        appended = await self._append(
            aggregate.stream_id(aggregate_id),
            version,
            events,
            aggregate.project_of(after),
            causation_id=causation_id,
        )
        self._states[(aggregate.name, aggregate_id)] = (after, appended)
        return after

    async def project(self, project_id: UUID) -> ProjectState:
        return await self.state(PROJECT, project_id)

    async def job(self, job_id: UUID) -> JobState:
        return await self.state(JOB, job_id)

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

    async def decide_project(
        self, project_id: UUID, command: ProjectCommand, *, causation_id: UUID | None = None
    ) -> ProjectState:
        return await self.decide(PROJECT, project_id, command, causation_id=causation_id)

    async def decide_job(self, job_id: UUID, command: JobCommand) -> JobState:
        return await self.decide_job_all(job_id, (command,))

    async def decide_job_all(self, job_id: UUID, commands: Sequence[JobCommand]) -> JobState:
        """The job's commands, all accepted or none; a job that ends takes its project's run
        with it, in the same transaction."""
        before = await self.job(job_id)
        after = await self.decide(JOB, job_id, *commands)
        if after.is_terminal and not before.is_terminal and after is not before:
            assert self._last_event_id is not None
            await self._run_follows_job(after, self._last_final, self._last_event_id)
        return after

    async def _run_follows_job(self, state: JobState, final: object, cause: UUID) -> None:
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
            await self.decide_project(state.project_id, command, causation_id=cause)
        except InvalidTransition as refused:
            # The project moved on (another run, archived): the job's end stands on its own.
            log.info("project %s does not follow job %s: %s", state.project_id, state.id, refused)

    async def record(self, stream_id: str, events: Sequence[object]) -> None:
        """Append to a stream that no aggregate decides on and nothing folds (the day's failed
        logins for unknown usernames), at whatever version it is (`ANY_VERSION`) and without
        reading it, so an append costs the same however long the stream has grown. Only for
        such append-only records: a stream with invariants goes through `decide`."""
        await self._append(stream_id, ANY_VERSION, events, None)

    async def _append(
        self,
        stream_id: str,
        expected: int,
        events: Sequence[object],
        project_id: UUID | None,
        *,
        causation_id: UUID | None = None,
    ) -> int:
        encoded = [self.store.registry.encode(e) for e in events]
        metadata = self.caller.metadata(causation_id)
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
        self._last_event_id = recorded[-1].event_id
        self._last_final = events[-1]
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
            except (ConcurrencyError, Contended, asyncpg.DeadlockDetectedError):
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
                # Before the idempotency record or anything else the work writes first.
                await self.store.begin_appending(conn)
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
