"""The reaper: says once of each queued job no online worker can claim that it waits
(`job.waiting`), expires the leases workers stopped renewing, fails jobs running past their
duration limit (`HELIX_MAX_JOB_DURATION`, or the project's), marks silent workers offline and
prunes workers offline for longer than `HELIX_WORKER_PRUNE_AFTER_SECONDS`, and drops artifact
uploads a stopped server left unrecorded.

Every node may run one; they do not need to agree. An expiry goes through the job's decider
with the fencing token the reaper read, so a lease renewed or re-granted meanwhile is left
alone, and two reapers expiring the same lease conflict on the job's stream: one wins. The
same conflict keeps `job.waiting` to one event when two reapers see the same job at once.
"""

from __future__ import annotations

import asyncio
import logging

from helix.config import Settings
from helix.errors import Conflict, NotFound
from helix.eventstore import EventStore
from helix.services.artifacts import ArtifactService
from helix.services.caller import system_caller
from helix.services.jobs import JobService
from helix.services.unit import Writer
from helix.services.workers import WorkerService
from helix.supervisor import Supervisor
from projections import jobs as jobs_model

log = logging.getLogger(__name__)
UPLOAD_SWEEP_INTERVAL_S = 600.0


class LeaseReaper:
    def __init__(
        self, store: EventStore, settings: Settings, *, supervisor: Supervisor | None = None
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.settings = settings
        writer = Writer(store)
        self._writer = writer
        self._jobs = JobService(writer, settings)
        self._workers = WorkerService(writer, settings)
        self._artifacts = ArtifactService(writer, settings, self._workers)
        self._next_upload_sweep = 0.0  # loop time of the next look for abandoned uploads
        self._caller = system_caller("reaper")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = self.supervisor.start("reaper", self.run)

    async def stop(self) -> None:
        await self.supervisor.stop([self._task])
        self._task = None

    async def run_once(self) -> tuple[int, int]:
        """Expire every lease that ran out and mark silent workers offline: how many of each.
        Workers offline for long enough are pruned too, and queued jobs no online worker can
        claim are said to wait."""
        # Before the expiries: a job queued again this round is looked at in the next one, by
        # when the workers that just went silent are offline too.
        await self._report_waiting()
        expired = 0
        for row in await jobs_model.expired_leases(self.store.pool, self._writer.now()):
            try:
                state = await self._jobs.expire_lease(
                    self._caller, row["job_id"], row["fencing_token"]
                )
            except (Conflict, NotFound) as lost:
                # Renewed, re-granted, ended or expired by another reaper meanwhile.
                log.debug("lease of job %s not expired: %s", row["job_id"], lost)
                continue
            expired += 1
            log.info("job %s lost its lease; now %s", row["job_id"], state.status)
        await self._enforce_durations()
        await self._drop_abandoned_uploads()
        offline = await self._workers.mark_offline(self._caller)
        pruned = await self._workers.prune(self._caller)
        if pruned:
            after = self.settings.worker_prune_after
            log.info("pruned %d workers offline for over %gs", pruned, after)
        return expired, offline

    async def _report_waiting(self) -> int:
        said = 0
        for job_id in await jobs_model.unreported_waiting(self.store.pool):
            try:
                said += await self._jobs.mark_waiting(self._caller, job_id)
            except NotFound:  # gone meanwhile (an import replaced the log)
                continue
        if said:
            log.info("%d queued jobs wait for a worker offering their capabilities", said)
        return said

    async def _drop_abandoned_uploads(self) -> None:
        # Uploads are abandoned only when a server stops mid-upload, and the look scans every
        # upload: now and then is enough.
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_upload_sweep:
            return
        self._next_upload_sweep = loop.time() + UPLOAD_SWEEP_INTERVAL_S
        if dropped := await self._artifacts.drop_abandoned(self._writer.now()):
            log.info("dropped %d abandoned artifact uploads", dropped)

    async def _enforce_durations(self) -> int:
        failed = 0
        for row in await jobs_model.overrun(self.store.pool, self._writer.now()):
            try:
                await self._jobs.enforce_duration(self._caller, row["job_id"], row["fencing_token"])
            except (Conflict, NotFound) as lost:
                # Ended meanwhile (or failed by another reaper), or its lease was re-granted.
                log.debug("job %s not failed for its duration: %s", row["job_id"], lost)
                continue
            failed += 1
            log.info("job %s ran past its duration limit; failed", row["job_id"])
        return failed

    async def run(self) -> None:
        """A round every `reaper_interval`; an error ends the loop, for the supervisor to
        restart."""
        while True:
            await self.run_once()
            await asyncio.sleep(self.settings.reaper_interval)


__all__ = ["LeaseReaper"]
