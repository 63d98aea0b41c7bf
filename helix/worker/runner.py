"""The worker: registers, heartbeats for its whole life, and claims and runs jobs one at a time.

`Worker(config)` has the `start()`/`stop()` of a background role, so `helix serve` can run one
in-process; `helix worker` runs one until SIGTERM or SIGINT. `start()` returns at once: a server
that is not answering yet is retried with backoff, never in a hot loop. `stop()` stops claiming
and terminates a running phase without reporting the job failed: it hands the job back, which
is retried after its backoff (elsewhere, or here later); when the server cannot be told, the
lease expires instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from helix.tasks import cancel_and_wait
from helix.worker import leftovers
from helix.worker.backoff import Backoff
from helix.worker.config import WorkerConfig
from helix.worker.guard import Guard
from helix.worker.host import resources
from helix.worker.isolation import PhaseUser, phase_user, prepare_workdir
from helix.worker.job import JobRun
from helix.worker.protocol import (
    AccessDenied,
    Claim,
    Client,
    ProtocolError,
    Registration,
    Unavailable,
)
from helix.worker.sweep import sweep
from helix.worker.user_lock import PhaseUserLock

log = logging.getLogger(__name__)

T = TypeVar("T")

# An empty claim answered faster than this (a server that does not long-poll, or --claim-wait
# 0) waits out the rest before the next one.
MIN_CLAIM_CYCLE_S = 1.0


class Worker:
    """One worker: at most one job at a time, run by `JobRun`, which runs its phases in turn.

    So at most one phase runs at a time, which is what lets the worker end every process of its
    phase user once a phase is over (`helix.worker.sweep`): none of them can be another phase's.
    Its guard (`helix.worker.guard`), started with it, ends the running phase if the worker dies;
    a worker starting ends what a dead one left (`helix.worker.leftovers`).
    """

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.worker_id: str | None = None
        self.jobs_run = 0
        self._phase_user: PhaseUser | None = None
        self._phase_user_lock: PhaseUserLock | None = None
        self._running: Path | None = None
        self._guard: Guard | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._job: JobRun | None = None
        self._fatal: ProtocolError | None = None

    @property
    def phase_user(self) -> PhaseUser | None:
        """Who the worker runs phases as; known once it has started."""
        return self._phase_user

    async def start(self) -> None:
        """Start the worker; IsolationError if its phases cannot be run as configured (also
        when another worker on this machine runs its phases as the same user)."""
        if self._phase_user is None:
            user = await asyncio.to_thread(phase_user, self.config.phase_user)
            await asyncio.to_thread(prepare_workdir, self.config.workdir, user)
            self._phase_user = user
        if self._phase_user.switch and self._phase_user_lock is None:
            self._phase_user_lock = await asyncio.to_thread(PhaseUserLock.take, self._phase_user)
        if self._guard is None:
            self._running = await self._clean_up_after_a_dead_worker()
            lock = self._phase_user_lock
            self._guard = await Guard.start(
                self._running, self._phase_user, None if lock is None else lock.fileno()
            )
        self._stopping.clear()
        self._fatal = None
        self._task = asyncio.create_task(self._live(), name=f"helix-worker-{self.config.name}")

    async def _clean_up_after_a_dead_worker(self) -> Path:
        """End what a worker before this one on the workdir, or as its phase user, left running
        (one that was killed together with its guard, say); where this one records its own."""
        assert self._phase_user is not None
        running = await asyncio.to_thread(leftovers.directory, self.config.workdir)
        await asyncio.to_thread(leftovers.end_leftovers, running)
        # The phase user is this worker's now: whatever still runs as it is a dead worker's.
        await sweep(self._phase_user)
        return running

    async def stop(self) -> None:
        """Stop claiming, terminate a running phase and hand its job back, and wait until the
        worker has ended. Errors are left for `wait()` to raise."""
        self._request_stop()
        if self._task is not None:
            await asyncio.wait({self._task})
            if not self._task.cancelled():
                self._task.exception()  # logged by _live; wait() still raises it
        await self._release_phase_user()

    async def wait(self) -> None:
        """Until the worker ends: after `stop()`, `--once` or `--max-jobs`, or an error it
        cannot recover from (raised here, e.g. AccessDenied for a key the server refuses)."""
        if self._task is None:
            raise RuntimeError("the worker was not started")
        await asyncio.shield(self._task)

    async def _live(self) -> None:
        try:
            await self._serve()
        except ProtocolError as exc:
            log.error("the worker stopped: the server refused it: %s", exc)
            raise
        except Exception:
            log.exception("the worker stopped on an error")
            raise
        finally:
            await self._release_phase_user()

    async def _release_phase_user(self) -> None:
        # Every phase swept its processes as it ended: another worker may have the user once
        # the guard, which holds it too, has exited.
        if self._guard is not None:
            guard, self._guard = self._guard, None
            await asyncio.shield(guard.close())
        if self._phase_user_lock is not None:
            self._phase_user_lock.release()
            self._phase_user_lock = None

    async def _serve(self) -> None:
        async with aiohttp.ClientSession() as session:
            client = Client(self.config.server, self.config.key, session)
            registration = await self._register(client)
            if registration is None:
                return
            interval = self.config.heartbeat_interval or registration.heartbeat_interval_s
            if interval >= registration.lease_s:
                log.warning(
                    "heartbeats every %gs cannot keep a %gs lease alive between reports",
                    interval,
                    registration.lease_s,
                )
            beats = asyncio.create_task(self._heartbeats(client, interval))
            try:
                await self._claim_loop(client)
            finally:
                await cancel_and_wait([beats])
        if self._fatal is not None:
            raise self._fatal

    async def _register(self, client: Client) -> Registration | None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                registration = await self._until_stopped(
                    client.register(
                        name=self.config.name,
                        hostname=socket.gethostname(),
                        capabilities=self.config.capabilities,
                        resources=resources(),
                    )
                )
            except Unavailable as exc:
                delay = backoff.next()
                log.warning("cannot register (%s); retrying in %.1fs", exc, delay)
                await self._pause(delay)
                continue
            if registration is None:
                return None
            self.worker_id = registration.worker_id
            log.info(
                "registered with %s as worker %s (%s), capabilities %s",
                self.config.server,
                registration.worker_id,
                self.config.name,
                ",".join(self.config.capabilities),
            )
            return registration
        return None

    async def _claim_loop(self, client: Client) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            if self.config.max_jobs is not None and self.jobs_run >= self.config.max_jobs:
                return
            assert self.worker_id is not None
            asked = time.monotonic()
            try:
                claim = await self._until_stopped(
                    client.claim(self.worker_id, wait=self.config.claim_wait)
                )
            except AccessDenied:
                raise
            except Unavailable as exc:
                delay = backoff.next()
                log.warning("claim failed (%s); retrying in %.1fs", exc, delay)
                await self._pause(delay)
                continue
            except ProtocolError as exc:
                if exc.status == 404:
                    log.warning("the server does not know this worker; registering again")
                    if await self._register(client) is None:
                        return
                    continue
                delay = backoff.next()
                log.error("claim refused (%s); retrying in %.1fs", exc, delay)
                await self._pause(delay)
                continue
            backoff.reset()
            if claim is None:
                await self._pause(MIN_CLAIM_CYCLE_S - (time.monotonic() - asked))
                continue
            await self._run(client, claim)
            if self.config.once:
                return

    async def _run(self, client: Client, claim: Claim) -> None:
        assert self._phase_user is not None
        job = JobRun(client, claim, self.config, self._phase_user, self._running)
        self._job = job
        self.jobs_run += 1
        if self._stopping.is_set():
            job.shut_down()
        log.info(
            "claimed job %s of project %s (attempt %d of %d, %d phases, fencing token %d)",
            claim.job_id,
            claim.project_id,
            claim.attempt,
            claim.max_attempts,
            len(claim.phases),
            claim.lease.fencing_token,
        )
        try:
            outcome = await job.run()
        except AccessDenied:
            raise
        except Exception:
            # A bug here must not stop the worker: the job's lease expires and it is retried.
            log.exception("job %s: the worker failed while running it", claim.job_id)
            return
        finally:
            self._job = None
        log.info("job %s: %s", claim.job_id, outcome.value)

    async def _heartbeats(self, client: Client, interval: float) -> None:
        while True:
            try:
                await self._beat(client)
            except AccessDenied as exc:
                log.error("the server refused the worker's heartbeat: %s", exc)
                self._fatal = exc
                self._request_stop()
                return
            except (Unavailable, ProtocolError) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(interval)

    def _request_stop(self) -> None:
        self._stopping.set()
        if self._job is not None:
            self._job.shut_down()

    async def _beat(self, client: Client) -> None:
        assert self.worker_id is not None
        job = self._job
        if job is not None:
            job.report_resources()
        current = (job.job_id, job.fencing_token) if job is not None and job.holds_lease else None
        status = "busy" if job is not None else "idle"
        if self._stopping.is_set():
            status = "draining"
        answer = await client.heartbeat(
            self.worker_id, status=status, current_job=current, resources=resources()
        )
        # The job may have ended (and another begun) while the heartbeat was on its way.
        if answer is not None and job is not None and current is not None and self._job is job:
            job.heartbeat_answered(answer)

    async def _until_stopped(self, call: Coroutine[Any, Any, T]) -> T | None:
        """The call's result, or None if the worker is stopped first (the call is cancelled)."""
        task = asyncio.ensure_future(call)
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return None if task.cancelled() else task.result()

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
