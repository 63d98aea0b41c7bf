"""Commands on jobs: cancel and requeue (users); lease expiry, duration limits and waiting
(the reaper).

Workers claim jobs and report on them through the worker service (`services/workers.py`).
"""

from __future__ import annotations

from uuid import UUID

from helix.config import Settings
from helix.domain import job
from helix.domain.job import JobState
from helix.domain.project import StartRun
from helix.errors import InvalidTransition
from helix.services.caller import Caller
from helix.services.unit import Tx, Writer
from projections import workers as workers_model


class JobService:
    def __init__(self, writer: Writer, settings: Settings) -> None:
        self.writer = writer
        self.settings = settings

    async def cancel(self, caller: Caller, job_id: UUID, reason: str = "") -> JobState:
        """Request cancellation; idempotent (a terminal or already-cancelling job is returned
        as it is). A queued job is cancelled at once and its project is ready again."""

        async def work(tx: Tx) -> JobState:
            await tx.visible_job(job_id)
            command = job.RequestCancel(
                by=tx.caller.actor, reason=reason or "cancelled by request", at=tx.at
            )
            return await tx.decide_job(job_id, command)

        return await self.writer.run(caller, work)

    async def requeue(self, caller: Caller, job_id: UUID) -> JobState:
        """Run a failed job again (its owner or an admin: whoever may see it and write): the
        phases its failure left undone are pending, with the configured attempts afresh, and
        its project, whose run it failed, is running it again, in the same transaction. 409 if
        the job did not fail, or its project has moved on to another run since."""

        async def work(tx: Tx) -> JobState:
            state = await tx.visible_job(job_id)
            assert state.project_id is not None
            requeue = job.RequeueJob(
                by=tx.caller.actor, max_attempts=self.settings.job_max_attempts, at=tx.at
            )
            after = await tx.decide_job(job_id, requeue)
            project = await tx.project(state.project_id)
            if project.latest_job_id != job_id:
                raise InvalidTransition(
                    "the job's project has run another job since; run the project again",
                    current=state.status.value if state.status else None,
                    reason="not_the_latest_run",
                )
            await tx.decide_project(state.project_id, StartRun(job_id=job_id, at=tx.at))
            return after

        return await self.writer.run(caller, work)

    async def expire_lease(
        self, caller: Caller, job_id: UUID, fencing_token: int | None
    ) -> JobState:
        async def work(tx: Tx) -> JobState:
            await tx.visible_job(job_id)
            command = job.ExpireLease(
                fencing_token=fencing_token,
                retry_base_s=self.settings.job_retry_base_s,
                retry_cap_s=self.settings.job_retry_cap_s,
                at=tx.at,
            )
            return await tx.decide_job(job_id, command)

        return await self.writer.run(caller, work)

    async def enforce_duration(
        self, caller: Caller, job_id: UUID, fencing_token: int | None
    ) -> JobState:
        """Fail the job if it runs past its duration limit (its worker's next report is then
        refused, and its heartbeat says the lease is gone)."""

        async def work(tx: Tx) -> JobState:
            await tx.visible_job(job_id)
            command = job.EnforceDurationLimit(fencing_token=fencing_token, at=tx.at)
            return await tx.decide_job(job_id, command)

        return await self.writer.run(caller, work)

    async def mark_waiting(self, caller: Caller, job_id: UUID) -> bool:
        """Say once that the queued job waits for a capable worker, if no online worker can
        claim it now; whether `job.waiting` was appended."""

        async def work(tx: Tx) -> bool:
            state = await tx.visible_job(job_id)
            offers = await workers_model.offers(tx.conn, online=True)
            waiting = job.unmet(job.needs(state.phases), offers, "online")
            if waiting is None:
                return False
            command = job.MarkWaiting(
                reason=waiting.reason, capabilities=waiting.capabilities, at=tx.at
            )
            after = await tx.decide_job(job_id, command)
            return after.waiting is not None and state.waiting is None

        return await self.writer.run(caller, work)


__all__ = ["JobService"]
