"""The worker protocol: register, heartbeat, claim (long-poll), report.

A claim locks the oldest claimable job with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
never wait for each other and never get the same job; the job's own stream (optimistic
concurrency on its version) is the second guard. A claimer with nothing to take sleeps until a
`helix_jobs` notification (a job was queued, came back for a retry, or freed a running slot),
the next retry falls due, or a slow poll.

Leases: a claim grants one; every accepted report and every heartbeat naming the job renews
it. A renewal is an event, so it is recorded only once less than three quarters of the lease is
left: a chatty worker does not double the job's history, and its lease never drops below three
quarters of its length while it reports.

Phase secrets: a claim opens the job's sealed secrets for the claiming worker alone; a job whose
secrets do not open here (no key, an unknown key, an altered or moved value) fails at its claim,
so no worker runs it with a wrong or missing value. Reports are masked before they are decided:
a phase that prints a secret leaves `***` in the log, never the value.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import attrs

from helix.auth.sealing import Sealer, SecretError
from helix.config import Settings
from helix.domain import job, project, worker
from helix.domain.job import JobState, JobStatus
from helix.domain.job.commands import WorkerReport
from helix.domain.project import ProjectState
from helix.domain.project.events import MessageRole
from helix.domain.worker import WorkerState
from helix.domain.worker.commands import Command as WorkerCommand
from helix.errors import (
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    Unavailable,
    ValidationError,
)
from helix.eventstore import ChannelWatcher
from helix.services.caller import Caller
from helix.services.phase_secrets import Masker, has_secrets, open_secrets
from helix.services.unit import Aggregate, Tx, Writer
from helix.tasks import cancel_and_wait
from projections import jobs as jobs_model
from projections import output as output_model
from projections import workers as workers_model

log = logging.getLogger(__name__)
CLAIM_CHANNEL = jobs_model.CLAIM_CHANNEL
CLAIM_POLL_S = 5.0  # a claimer re-reads the queue this often even without a notification
CLAIM_CANDIDATES = 20  # jobs one claim may pass over (owner at its limit) before giving up
RENEW_BELOW = 0.75  # renew a lease once less than this share of it is left
WORKER_STATUSES = ("idle", "busy", "draining")
OFFLINE_BATCH = 100  # silent workers one reaper round marks offline at most
CONTEXT_MESSAGES = 50  # the latest messages of the discussion a phase's context holds
CONTEXT_OUTPUT_LINES = 500  # the job's latest output lines read for the phases' tails

WORKER: Aggregate[WorkerState, WorkerCommand] = Aggregate(
    name="worker",
    stream_id=worker.stream_id,
    fold=worker.fold,
    initial=worker.INITIAL,
    decide=worker.decide,
)


@attrs.frozen(kw_only=True)
class Claim:
    job: JobState
    lease_s: float
    # The plaintext of the job's phase secrets, by phase and variable: for this answer only.
    secrets: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class JobContext:
    """What a claimed job's phases may know: the project, its discussion, the job so far."""

    job: JobState
    project: ProjectState
    # The job's latest output lines (phase, line), oldest first.
    output: list[asyncpg.Record]


@attrs.frozen(kw_only=True)
class HeartbeatJob:
    """What a heartbeat tells a worker about the job it says it runs."""

    job_id: UUID
    status: str | None
    cancel_requested: bool
    lease_valid: bool
    lease_expires_at: datetime | None


class WorkerService:
    def __init__(
        self,
        writer: Writer,
        settings: Settings,
        signal: ChannelWatcher | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.writer = writer
        self.settings = settings
        self.signal = signal
        self.sealer = sealer
        self._closing = asyncio.Event()

    def stop_waiting(self) -> None:
        """Answer every waiting claim now, with no job, and wait no more: the server is going
        away, and a long-poll would hold its shutdown for up to `claim_max_wait`."""
        self._closing.set()

    # --- registry ---------------------------------------------------------------------------

    async def register(
        self,
        caller: Caller,
        *,
        name: str,
        hostname: str,
        capabilities: Sequence[str],
        resources: dict[str, Any],
    ) -> asyncpg.Record:
        worker_id = uuid.uuid4()

        async def work(tx: Tx) -> asyncpg.Record:
            command = worker.RegisterWorker(
                worker_id=worker_id,
                user_id=UUID(caller.user_id),
                name=name,
                hostname=hostname,
                capabilities=tuple(capabilities),
                resources=resources,
                at=tx.at,
            )
            await tx.decide(WORKER, worker_id, command)
            row: asyncpg.Record = await workers_model.get(tx.conn, worker_id)
            return row

        return await self.writer.run(caller, work)

    async def _own_worker(self, tx: Tx, worker_id: UUID, *, lock: bool = False) -> Any:
        """The worker's row; 404 if there is none, 403 if another user registered it."""
        row = await workers_model.get(tx.conn, worker_id, lock=lock)
        if row is None:
            raise NotFound("worker not found", worker_id=str(worker_id))
        if not tx.caller.may_see(str(row["user_id"])):
            raise Forbidden("this worker was registered by another user")
        return row

    async def _alive(self, tx: Tx, worker_id: UUID, row: Any) -> None:
        """A sign of life from the worker: one that was offline comes back online."""
        if not row["online"]:
            await tx.decide(WORKER, worker_id, worker.MarkOnline(at=tx.at))

    async def page(
        self, caller: Caller, *, online: bool | None, limit: int, offset: int
    ) -> tuple[list[asyncpg.Record], int]:
        owner = caller.viewer.owner_filter
        user_id = None if owner is None else UUID(owner)
        async with self.writer.store.pool.acquire() as conn:
            return await workers_model.page(
                conn, user_id=user_id, online=online, limit=limit, offset=offset
            )

    async def get(self, caller: Caller, worker_id: UUID) -> asyncpg.Record:
        async def work(tx: Tx) -> asyncpg.Record:
            row = await workers_model.get(tx.conn, worker_id)
            if row is None or not caller.may_see(str(row["user_id"])):
                raise NotFound("worker not found", worker_id=str(worker_id))
            found: asyncpg.Record = row
            return found

        return await self.writer.run(caller, work)

    # --- heartbeat --------------------------------------------------------------------------

    async def heartbeat(
        self,
        caller: Caller,
        worker_id: UUID,
        *,
        status: str,
        current_job: UUID | None,
        fencing_token: int | None,
        resources: dict[str, Any] | None,
    ) -> HeartbeatJob | None:
        """Record a heartbeat (a worker that was offline comes back online, as an event) and
        renew the lease of the job it runs while it still holds it."""

        async def work(tx: Tx) -> HeartbeatJob | None:
            row = await self._own_worker(tx, worker_id, lock=True)
            await self._alive(tx, worker_id, row)
            await workers_model.heartbeat(
                tx.conn,
                worker_id,
                status=status,
                current_job=current_job,
                resources=resources,
                at=tx.at,
            )
            if current_job is None:
                return None
            state = await tx.job(current_job)
            holds = (
                state.status is JobStatus.RUNNING
                and state.worker_id == str(worker_id)
                and fencing_token == state.fencing_token
                and state.lease_expires_at is not None
                and tx.at < state.lease_expires_at
            )
            if holds:
                state = await self.renew(tx, current_job, state)
            return HeartbeatJob(
                job_id=current_job,
                status=state.status.value if state.status else None,
                cancel_requested=state.cancel_requested,
                lease_valid=holds,
                lease_expires_at=state.lease_expires_at if holds else None,
            )

        return await self.writer.run(caller, work)

    async def renew(self, tx: Tx, job_id: UUID, state: JobState) -> JobState:
        lease_s = state.lease_s or self.settings.worker_lease_s
        left = (state.lease_expires_at - tx.at).total_seconds() if state.lease_expires_at else 0
        if state.status is not JobStatus.RUNNING or left >= lease_s * RENEW_BELOW:
            return state
        renew = job.RenewLease(fencing_token=state.fencing_token, lease_s=lease_s, at=tx.at)
        return await tx.decide_job(job_id, renew)

    # --- claim ------------------------------------------------------------------------------

    async def claim(
        self, caller: Caller, worker_id: UUID, *, wait: float, lease_s: float | None = None
    ) -> Claim | None:
        """Claim the oldest job this worker may take, waiting up to `wait` seconds for one."""
        lease = self.settings.worker_lease_s if lease_s is None else lease_s
        if not (math.isfinite(wait) and 0 <= wait <= self.settings.claim_max_wait):
            raise ValidationError(
                f"wait must be between 0 and {self.settings.claim_max_wait:g} seconds",
                field="wait",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            seen = self.signal.count if self.signal is not None else 0
            claimed = await self.writer.run(
                caller, lambda tx: self._claim_once(tx, worker_id, lease)
            )
            if claimed is not None:
                return claimed
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing.is_set():
                return None
            nap = min(remaining, CLAIM_POLL_S)
            due = await jobs_model.next_due(self.writer.store.pool, self.writer.now())
            if due is not None:
                nap = min(nap, max((due - self.writer.now()).total_seconds(), 0.0) + 0.01)
            await self._nap(seen, nap)

    async def _nap(self, seen: int, seconds: float) -> None:
        """Until a claim notification after `seen`, `seconds` pass, or the server closes."""
        signal = self.signal
        napping = asyncio.create_task(
            asyncio.sleep(seconds) if signal is None else signal.wait(seen, seconds)
        )
        closing = asyncio.create_task(self._closing.wait())
        try:
            await asyncio.wait({napping, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([napping, closing])

    async def _claim_once(self, tx: Tx, worker_id: UUID, lease_s: float) -> Claim | None:
        row = await self._own_worker(tx, worker_id)
        capabilities = tuple(row["capabilities"])
        limit = self.settings.max_concurrent_jobs
        passed: list[UUID] = []
        for _ in range(CLAIM_CANDIDATES):
            found = await jobs_model.claimable(
                tx.conn, capabilities=capabilities, at=tx.at, limit=limit, passed=passed
            )
            if found is None:
                return None
            job_id, owner = found["job_id"], found["owner"]
            # The running limit holds across concurrent claimers: count under the owner's lock.
            if not await jobs_model.try_lock_owner(tx.conn, owner) or (
                await jobs_model.count_running(tx.conn, owner) >= limit
            ):
                passed.append(job_id)
                continue
            command = job.ClaimJob(
                worker_id=str(worker_id), lease_s=lease_s, capabilities=capabilities, at=tx.at
            )
            state = await tx.decide_job(job_id, command)
            try:
                secrets = open_secrets(self.sealer, state)
            except SecretError as exc:
                failed = job.FailJob(
                    fencing_token=state.fencing_token,
                    error=f"a phase secret cannot be used: {exc}",
                    at=tx.at,
                )
                await tx.decide_job(job_id, failed)
                passed.append(job_id)
                continue
            await self._alive(tx, worker_id, row)
            await workers_model.heartbeat(
                tx.conn, worker_id, status="busy", current_job=job_id, resources=None, at=tx.at
            )
            return Claim(job=state, lease_s=lease_s, secrets=secrets)
        return None

    # --- reports ----------------------------------------------------------------------------

    async def report(
        self,
        caller: Caller,
        job_id: UUID,
        fencing_token: int,
        reports: Sequence[WorkerReport],
    ) -> JobState:
        """Apply a worker's reports atomically, in order, under its fencing token; renew the
        lease. A stale token or an expired lease is a Conflict and nothing is appended."""

        async def work(tx: Tx) -> JobState:
            state = await self.leased_job(tx, job_id, fencing_token)
            if reports:
                stamped = [attrs.evolve(report, at=tx.at) for report in reports]
                masked = self.masked(state, stamped)
                state = await tx.decide_job_all(job_id, masked)
                await self._post_messages(tx, state, masked)
            return await self.renew(tx, job_id, state)

        return await self.writer.run(caller, work)

    async def _post_messages(
        self, tx: Tx, state: JobState, reports: Sequence[WorkerReport]
    ) -> None:
        """A phase's messages join the project's discussion, as role `agent`, in the same
        transaction as the job's record of them."""
        assert state.project_id is not None
        for report in reports:
            if not isinstance(report, job.RecordMessage):
                continue
            post = project.PostMessage(
                message_id=uuid.uuid4(),
                role=MessageRole.AGENT,
                author=report.phase,
                content=report.content,
                at=tx.at,
            )
            try:
                await tx.decide_project(state.project_id, post)
            except InvalidTransition as refused:
                # An archived project takes no message; the job's event still records it.
                log.info("job %s: message not posted to its project: %s", state.id, refused)

    async def context(self, caller: Caller, job_id: UUID, fencing_token: int) -> JobContext:
        """The job's context for the worker holding its live lease (fenced as a report is)."""

        async def work(tx: Tx) -> JobContext:
            state = await self.leased_job(tx, job_id, fencing_token)
            expires = state.lease_expires_at
            if state.status is not JobStatus.RUNNING or expires is None or tx.at >= expires:
                raise Conflict(
                    "the job holds no live lease under this fencing token",
                    reason="terminal" if state.is_terminal else "lease_expired",
                    current_state=state.status.value if state.status else None,
                )
            assert state.project_id is not None
            found = await tx.project(state.project_id)
            output = await output_model.tail(tx.conn, job_id, CONTEXT_OUTPUT_LINES)
            return JobContext(job=state, project=found, output=output)

        return await self.writer.run(caller, work)

    async def release(self, caller: Caller, job_id: UUID, fencing_token: int) -> JobState:
        """The worker hands the job back (it is stopping): the lease ends now, as an expiry
        would end it, so the job is retried after its backoff instead of after the lease."""

        async def work(tx: Tx) -> JobState:
            await self.leased_job(tx, job_id, fencing_token)
            command = job.ExpireLease(
                reason="handed back by its worker",
                fencing_token=fencing_token,
                retry_base_s=self.settings.job_retry_base_s,
                retry_cap_s=self.settings.job_retry_cap_s,
                handed_back=True,
                at=tx.at,
            )
            return await tx.decide_job(job_id, command)

        return await self.writer.run(caller, work)

    async def leased_job(self, tx: Tx, job_id: UUID, fencing_token: int) -> JobState:
        """The job, leased under `fencing_token` to a worker of the caller's; else 404/409/403."""
        state = await tx.job(job_id)
        if not state.exists:
            raise NotFound("job not found", job_id=str(job_id))
        if fencing_token != state.fencing_token or state.worker_id is None:
            raise Conflict(
                "the fencing token is not the job's current lease",
                reason="stale_fencing_token",
                current_state=state.status.value if state.status else None,
            )
        await self._own_worker(tx, UUID(state.worker_id))
        return state

    def masked(self, state: JobState, reports: list[WorkerReport]) -> list[WorkerReport]:
        """The reports with the job's secrets masked (`***`) wherever a phase could print one."""
        if not has_secrets(state):
            return reports
        try:
            masker = Masker.of(open_secrets(self.sealer, state))
        except SecretError as exc:
            # Unmasked output may hold a secret: refuse it rather than record it.
            raise Unavailable(
                f"the job's secrets cannot be opened to mask its reports: {exc}"
            ) from None
        return [masker.report(report) for report in reports]

    # --- the reaper's side ------------------------------------------------------------------

    async def mark_offline(self, caller: Caller) -> int:
        """Mark workers silent for longer than `worker_offline_after` offline; how many."""

        async def work(tx: Tx) -> int:
            silent_since = tx.at - timedelta(seconds=self.settings.worker_offline_after)
            rows = await workers_model.silent(
                tx.conn, silent_since=silent_since, limit=OFFLINE_BATCH
            )

            def offline(row: asyncpg.Record) -> WorkerCommand:
                return worker.MarkOffline(last_heartbeat_at=row["last_heartbeat_at"], at=tx.at)

            return len(await _decide_each(tx, rows, offline, "marked offline"))

        return await self.writer.run(caller, work)

    async def prune(self, caller: Caller) -> int:
        """Prune workers offline for longer than `worker_prune_after` (0: never); how many."""
        if self.settings.worker_prune_after <= 0:
            return 0

        async def work(tx: Tx) -> int:
            offline_before = tx.at - timedelta(seconds=self.settings.worker_prune_after)
            rows = await workers_model.prunable(
                tx.conn, offline_before=offline_before, limit=OFFLINE_BATCH
            )
            pruned = await _decide_each(tx, rows, lambda _: worker.PruneWorker(at=tx.at), "pruned")
            for worker_id in pruned:
                await workers_model.forget_heartbeat(tx.conn, worker_id)
            return len(pruned)

        return await self.writer.run(caller, work)


async def _decide_each(
    tx: Tx,
    rows: Sequence[asyncpg.Record],
    command_of: Callable[[asyncpg.Record], WorkerCommand],
    what: str,
) -> list[UUID]:
    """Decide one command per registry row; the workers it changed."""
    done = []
    for row in rows:
        try:
            await tx.decide(WORKER, row["worker_id"], command_of(row))
        except InvalidTransition as refused:
            # The registry row lags the stream: skip it rather than stall the round.
            log.info("worker %s not %s: %s", row["worker_id"], what, refused)
            continue
        done.append(row["worker_id"])
    return done


__all__ = [
    "CLAIM_CHANNEL",
    "CONTEXT_MESSAGES",
    "WORKER",
    "WORKER_STATUSES",
    "Claim",
    "HeartbeatJob",
    "JobContext",
    "WorkerService",
]
