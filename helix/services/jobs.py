"""Commands on jobs: cancel (users), and claim and reports (workers).

The per-user running limit is enforced at claim: a job beyond it stays queued, and a worker
asking for it is refused until one of the owner's jobs ends.
"""

from __future__ import annotations

from uuid import UUID

from helix.config import Settings
from helix.domain import job
from helix.domain.job import JobState
from helix.domain.job.commands import Command as JobCommand
from helix.domain.project import ProjectStatus
from helix.errors import Conflict
from helix.services.caller import Caller
from helix.services.unit import Tx, Writer
from projections import jobs as jobs_model


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

    async def claim(
        self,
        caller: Caller,
        job_id: UUID,
        *,
        worker_id: str,
        lease_s: float = job.DEFAULT_LEASE_S,
        capabilities: tuple[str, ...] | None = None,
    ) -> JobState:
        """A worker takes a queued job under a lease, within the owner's running limit."""

        async def work(tx: Tx) -> JobState:
            state = await tx.visible_job(job_id)
            limit = self.settings.max_concurrent_jobs
            await jobs_model.lock_owner(tx.conn, state.owner)
            running = await jobs_model.count_running(tx.conn, state.owner)
            if state.status is job.JobStatus.QUEUED and running >= limit:
                raise Conflict(
                    f"the owner already runs {running} jobs (limit {limit}); the job stays queued",
                    reason="concurrency_limit",
                    limit=limit,
                    running=running,
                    current_state=state.status.value,
                )
            assert state.project_id is not None
            owner_project = await tx.project(state.project_id)
            if owner_project.status is ProjectStatus.PAUSED:
                raise Conflict(
                    "the job's project is paused",
                    reason="project_paused",
                    current_state=state.status.value if state.status else None,
                )
            command = job.ClaimJob(
                worker_id=worker_id, lease_s=lease_s, capabilities=capabilities, at=tx.at
            )
            return await tx.decide_job(job_id, command)

        return await self.writer.run(caller, work)

    async def report(self, caller: Caller, job_id: UUID, command: JobCommand) -> JobState:
        """Apply a worker's report (or any other job command) to the job."""

        async def work(tx: Tx) -> JobState:
            await tx.visible_job(job_id)
            return await tx.decide_job(job_id, command)

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


__all__ = ["JobService"]
