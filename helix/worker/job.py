"""Running one claimed job: its phases in order, each reported as it happens, under the lease.

Every report carries the fencing token of the claim. Reports go out one request at a time, in
the order they were made, so the server sees phase_started, then output and files, then the
phase's outcome. A phase's files are uploaded (`PUT .../files/{path}`, streamed, within the
limits the claim names) once its processes are gone and before its outcome is reported; each
one not stored is reported with the reason. When the lease is lost (a 409 for a stale token or
an expired lease, or a heartbeat saying so) the job is no longer this worker's: its process
group is killed at once and nothing more is reported. When the worker shuts down it reports
nothing either; the lease expires and the job is retried elsewhere. When a pause is requested
the next phase does not start (the server refuses it): the worker acknowledges the pause and
is done with the job, which any worker takes up again once resumed; a pause `now` takes the
lease away, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import os
import re
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from helix.worker import directives, reports
from helix.worker.backoff import Backoff
from helix.worker.config import WorkerConfig
from helix.worker.isolation import (
    IsolationError,
    PhaseUser,
    job_variables,
    phase_environment,
    prepare_workspace,
    write_for_phase,
)
from helix.worker.outbox import Outbox
from helix.worker.process import (
    Command,
    Finished,
    OutputOptions,
    PhaseProcess,
    Stop,
)
from helix.worker.protocol import (
    AccessDenied,
    Claim,
    Client,
    JobStatus,
    Phase,
    ProtocolError,
    Report,
    Unavailable,
)
from helix.worker.usage import Usage
from helix.worker.workspace import (
    CHUNK_BYTES,
    CONTEXT_FILE,
    FileRecord,
    Snapshot,
    changed_files,
    named_file,
    open_for_upload,
    snapshot,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DONE_PHASES = frozenset({"completed", "skipped"})
# A project id names a directory under the workdir: one plain path component, never '..'.
_SAFE_DIRECTORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Files one phase may name with `::helix file`; the rest are ignored.
MAX_NAMED_FILES = 1000


class Outcome(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # held before its next phase; resumed, any worker may take it up again
    LOST = "lost"  # the lease was taken away; nothing more was reported
    ABANDONED = "abandoned"  # the worker stopped; the job is handed back (or its lease expires)


class _Lost(Exception):
    pass


class _Abandoned(Exception):
    pass


class _Cancelled(Exception):
    pass


class _Paused(Exception):
    """A pause was requested: the worker starts no further phase and acknowledges it."""


class _Resumed(Exception):
    """The pause being acknowledged was withdrawn: the phases go on."""


class _Rejected(Exception):
    """The server refused a report as invalid: a bug in the worker, or a disagreement."""


class JobRun:
    def __init__(
        self,
        client: Client,
        claim: Claim,
        config: WorkerConfig,
        user: PhaseUser,
        running: Path | None = None,
    ) -> None:
        self.claim = claim
        self._running = running
        self.fencing_token = claim.lease.fencing_token
        self._client = client
        self._config = config
        self._user = user
        self._options = OutputOptions(
            lines_per_event=config.lines_per_event,
            flush_interval=config.flush_interval,
            stderr_tail=config.stderr_tail,
            kill_grace=config.kill_grace,
        )
        self._filter = directives.OutputFilter.of(config.output_filter)
        self._lease_deadline = time.monotonic() + claim.lease.lease_s
        self._cancel = asyncio.Event()
        self._lost = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._halted = asyncio.Event()  # lost or shut down: report nothing more
        self._outbox = Outbox(self._post)
        self._process: PhaseProcess | None = None
        self._phase: str | None = None  # the phase whose process runs
        self._reported: Usage | None = None  # its resource usage as last reported
        self._completed: set[str] = set()  # phases this run completed
        self._stored: dict[str, int] = {}  # the size of each file this run stored, by path

    @property
    def job_id(self) -> str:
        return self.claim.job_id

    @property
    def holds_lease(self) -> bool:
        """Whether the worker still works for this job (and so renews its lease)."""
        return not self._halted.is_set()

    def request_cancel(self) -> None:
        if self._cancel.is_set():
            return
        log.info("job %s: cancellation requested", self.job_id)
        self._cancel.set()
        if self._process is not None:
            self._process.stop(Stop.TERMINATE)

    def lose(self) -> None:
        if self._lost.is_set():
            return
        log.warning("job %s: the lease is lost; abandoning the job", self.job_id)
        self._lost.set()
        self._halted.set()
        if self._process is not None:
            self._process.stop(Stop.KILL)

    def shut_down(self) -> None:
        self._shutdown.set()
        self._halted.set()
        if self._process is not None:
            self._process.stop(Stop.TERMINATE)

    def report_resources(self) -> None:
        """Queue what the running phase has used so far, when it changed since the last report
        (the worker calls it at each heartbeat)."""
        process, phase = self._process, self._phase
        if process is None or phase is None or not self.holds_lease:
            return
        used = process.used
        if used == self._reported or used == Usage():
            return
        self._reported = used
        self._outbox.offer([reports.phase_resources(phase, used)])

    def heartbeat_answered(self, status: JobStatus) -> None:
        if status.job_id != self.job_id:
            return
        if not status.lease_valid:
            self.lose()
            return
        self._lease_deadline = time.monotonic() + self.claim.lease.lease_s
        if status.cancel_requested:
            self.request_cancel()

    async def run(self) -> Outcome:
        try:
            return await self._steps()
        finally:
            self._outbox.close()

    async def _steps(self) -> Outcome:
        step: Callable[[], Awaitable[Outcome]] = self._run_phases
        # At most: the phases, then acknowledging a cancel or pause or failing the job (a pause
        # withdrawn meanwhile: the phases again, and so on), then failing it.
        for _ in range(5):
            try:
                return await step()
            except _Lost:
                return Outcome.LOST
            except _Abandoned:
                await self._hand_back()
                return Outcome.ABANDONED
            except _Cancelled:
                step = self._acknowledge_cancel
            except _Paused:
                step = self._acknowledge_pause
            except _Resumed:
                step = self._run_phases
            except _Rejected as exc:
                log.error("job %s: the server rejected a report: %s", self.job_id, exc)
                step = functools.partial(self._fail, f"the worker's report was rejected: {exc}")
        log.error("job %s: giving up; its lease will expire", self.job_id)
        return Outcome.ABANDONED

    async def _run_phases(self) -> Outcome:
        if not _SAFE_DIRECTORY.fullmatch(self.claim.project_id):
            return await self._fail(f"project id {self.claim.project_id!r} is not a safe name")
        try:
            workspace = await asyncio.to_thread(
                prepare_workspace, self._config.workdir, self.claim.project_id, self._user
            )
        except (OSError, IsolationError) as exc:
            log.error("job %s: no workspace: %s", self.job_id, exc)
            return await self._fail(f"the worker could not prepare the workspace: {exc}")
        total = len(self.claim.phases)
        due = [p.name for p in self.claim.phases if not self._done(p)]
        for index, phase in enumerate(self.claim.phases):
            if self._done(phase):
                continue
            self._check_halted()
            if self._cancel.is_set():
                raise _Cancelled
            if phase.status == "failed":
                return await self._fail(f"phase {phase.name!r} had already failed")
            argv = phase.command or self._config.agent_command
            if argv is None:
                error = f"phase {phase.name!r} has no command, and this worker has no agent command"
                await self._send(
                    [
                        reports.phase_started(phase.name),
                        reports.phase_failed(phase.name, exit_code=None, error=error),
                        reports.job_failed(error),
                    ]
                )
                return Outcome.FAILED
            await self._send([reports.phase_started(phase.name)])
            if self._cancel.is_set():
                raise _Cancelled
            percent = 100 * (index + 1) // total
            # The last phase's end and the job's go in one request (a cancel requested
            # meanwhile makes the server cancel the job instead of completing it).
            last = phase.name == due[-1]
            then = [reports.job_completed()] if last else []
            if not await self._run_phase(phase, argv, workspace, percent, then):
                return Outcome.FAILED
            self._completed.add(phase.name)
            if last:
                return Outcome.CANCELLED if self._cancel.is_set() else Outcome.COMPLETED
        if self._cancel.is_set():
            raise _Cancelled
        await self._send([reports.job_completed()])
        return Outcome.COMPLETED

    def _done(self, phase: Phase) -> bool:
        return phase.status in DONE_PHASES or phase.name in self._completed

    async def _run_phase(
        self,
        phase: Phase,
        argv: tuple[str, ...],
        workspace: Path,
        percent: int,
        then: list[Report],
    ) -> bool:
        """Run the phase and report how it ended (and, when it completed, the job's progress
        through its plan, followed by `then`); True when it completed."""
        log.info("job %s: phase %r started: %s", self.job_id, phase.name, shlex.join(argv))
        context = await self._reliably(
            lambda: self._client.context(self.job_id, self.fencing_token)
        )
        context_file = workspace / CONTEXT_FILE
        await asyncio.to_thread(self._write_context, context_file, context)
        before = await asyncio.to_thread(snapshot, workspace)
        model = self.claim.job.get("model")
        variables = job_variables(
            job_id=self.job_id,
            project_id=self.claim.project_id,
            phase=phase.name,
            workspace=workspace,
            context_file=context_file,
            model=model if isinstance(model, str) else None,
            prompt=phase.prompt,
        )
        env = phase_environment(
            os.environ, user=self._user, workspace=workspace, extra={**phase.env, **variables}
        )
        named: list[str] = []
        command = Command(
            argv=argv, cwd=workspace, env=env, timeout_s=phase.timeout_s, user=self._user
        )
        process = PhaseProcess(
            command,
            functools.partial(self._output, phase.name, named),
            self._options,
            self._running,
        )
        self._process, self._phase, self._reported = process, phase.name, None
        try:
            finished = await process.run()
        finally:
            self._process = self._phase = None
        self._check_halted()
        files = await asyncio.to_thread(self._files, workspace, before, named)
        found = [reports.file(phase.name, record) for record in files]
        if finished.used is not None:
            found.append(reports.phase_resources(phase.name, finished.used))
        found += await self._upload_all(phase.name, workspace, files)
        if finished.stopped is not None and self._cancel.is_set():
            await self._send(found)
            raise _Cancelled
        error = _failure(finished, phase.timeout_s)
        log.info(
            "job %s: phase %r %s after %.2fs",
            self.job_id,
            phase.name,
            "completed (exit code 0)" if error is None else f"failed: {error}",
            finished.duration_s,
        )
        if error is None:
            await self._send(
                [*found, reports.phase_completed(phase.name), reports.progress(percent), *then]
            )
            return True
        failed = reports.phase_failed(
            phase.name,
            exit_code=finished.exit_code,
            error=error,
            stderr_tail=finished.stderr_tail,
        )
        await self._send(
            [*found, failed, reports.job_failed(f"phase {phase.name!r} failed: {error}")]
        )
        return False

    async def _upload_all(
        self, phase: str, workspace: Path, files: list[FileRecord]
    ) -> list[Report]:
        """Upload the phase's files within the server's limits; a report for each one not
        stored, saying why (over a limit, unreadable, refused by the server)."""
        limits = self.claim.artifacts
        if not limits.uploads:
            return []
        if files:
            await self._outbox.flush()  # the phase's output before its files, as it was made
        refused: list[Report] = []
        for record in files:
            reason = self._over_limit(record)
            if reason is None:
                reason = await self._upload(phase, workspace, record)
            if reason is None:
                self._stored[record.path] = record.size
            else:
                self._stored.pop(record.path, None)
                log.info("job %s: %s not stored: %s", self.job_id, record.path, reason)
                refused.append(reports.artifact_not_stored(phase, record, reason))
        return refused

    def _over_limit(self, record: FileRecord) -> str | None:
        limits = self.claim.artifacts
        if limits.max_bytes is not None and record.size > limits.max_bytes:
            return (
                f"the file is {record.size} bytes, more than the {limits.max_bytes} bytes "
                "a file may have (HELIX_ARTIFACT_MAX_BYTES)"
            )
        if limits.job_max_bytes is not None:
            total = sum(size for path, size in self._stored.items() if path != record.path)
            if total + record.size > limits.job_max_bytes:
                return (
                    f"the job's stored files would take {total + record.size} bytes, more "
                    f"than the {limits.job_max_bytes} bytes a job may store "
                    "(HELIX_JOB_ARTIFACTS_MAX_BYTES)"
                )
        return None

    async def _upload(self, phase: str, workspace: Path, record: FileRecord) -> str | None:
        """Upload one file, streamed from the workspace; None once stored, or why not."""

        async def attempt() -> str | None:
            try:
                fd = await asyncio.to_thread(open_for_upload, workspace, record.path)
            except OSError as exc:
                return f"not read: {exc}"
            try:
                await self._client.upload(
                    self.job_id,
                    self.fencing_token,
                    phase=phase,
                    path=record.path,
                    size=record.size,
                    sha256=record.sha256,
                    change=record.change,
                    body=read_chunks(fd),
                )
            except ProtocolError as exc:
                if exc.status in (400, 413, 422):
                    return f"refused by the server: {exc.message}"
                raise
            return None

        return await self._reliably(attempt)

    def _write_context(self, path: Path, context: Mapping[str, Any]) -> None:
        write_for_phase(path, json.dumps(context, indent=1).encode(), self._user)

    @staticmethod
    def _files(workspace: Path, before: Snapshot, named: list[str]) -> list[FileRecord]:
        """What the phase created or changed, and the files it named that exist in the
        workspace (each once, by path)."""
        found = {record.path: record for record in changed_files(workspace, before)}
        for name in dict.fromkeys(named):
            record = named_file(workspace, name, before)
            if record is None:
                log.info("not reporting %r: not a file inside the workspace", name)
            elif record.path not in found:
                found[record.path] = record
        return [found[path] for path in sorted(found)]

    async def _output(self, phase: str, named: list[str], stream: str, lines: list[str]) -> None:
        if not self.holds_lease:
            return  # lost or shutting down: the output has nowhere to go
        batch = self._reports_of(phase, named, stream, lines)
        if batch:
            # Queued, not awaited: the pump goes back to reading while the outbox sends.
            with contextlib.suppress(_Abandoned):
                await self._outbox.put(batch)

    def _reports_of(
        self, phase: str, named: list[str], stream: str, lines: list[str]
    ) -> list[Report]:
        """Output lines as reports: `::helix` directives on stdout become their reports (a file
        is kept for the phase's end), the rest are output unless the filter drops them."""
        batch: list[Report] = []
        kept: list[str] = []
        for line in lines:
            directive = directives.parse(line) if stream == "stdout" else None
            if directive is None:
                if self._filter.keeps(line):
                    kept.append(line)
                continue
            if isinstance(directive, directives.File):
                if len(named) < MAX_NAMED_FILES:
                    named.append(directive.path)
                continue
            if kept:
                batch.append(reports.output(phase, stream, kept))
                kept = []
            match directive:
                case directives.Progress():
                    batch.append(reports.progress(directive.percent))
                case directives.Cost():
                    batch.append(reports.cost(phase, directive.tokens, directive.usd))
                case directives.Message():
                    batch.append(reports.message(phase, directive.content))
        if kept:
            batch.append(reports.output(phase, stream, kept))
        return batch

    async def _hand_back(self) -> None:
        """The worker is stopping and its phase was ended: give the job back now, so that it is
        retried after its backoff rather than after its lease runs out."""
        if not self._shutdown.is_set() or self._lost.is_set():
            return
        try:
            await self._client.release(self.job_id, self.fencing_token)
        except (Unavailable, ProtocolError) as exc:
            log.warning("job %s: not handed back (%s); its lease will expire", self.job_id, exc)
            return
        log.info("job %s: handed back for a retry", self.job_id)

    async def _acknowledge_pause(self) -> Outcome:
        await self._send([reports.pause_acknowledged()])
        return Outcome.PAUSED

    async def _acknowledge_cancel(self) -> Outcome:
        await self._send([reports.cancel_acknowledged()])
        return Outcome.CANCELLED

    async def _fail(self, error: str) -> Outcome:
        await self._send([reports.job_failed(error)])
        return Outcome.FAILED

    def _check_halted(self) -> None:
        if self._lost.is_set():
            raise _Lost
        if self._shutdown.is_set():
            raise _Abandoned

    async def _send(self, batch: list[Report]) -> None:
        """`batch` after everything reported before it, sent and answered."""
        await self._outbox.send(batch)

    async def _post(self, request: list[Report]) -> None:
        # One idempotency key for every try of this request: a retry after a lost answer is
        # not applied twice.
        key = uuid.uuid4().hex
        answer = await self._reliably(
            lambda: self._client.report(
                self.job_id, self.fencing_token, request, idempotency_key=key
            )
        )
        if answer.fencing_token is not None:
            self.fencing_token = answer.fencing_token
        if answer.cancel_requested:
            self.request_cancel()

    async def _reliably(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call`'s answer, tried again while the server is unavailable (for up to a lease);
        a lost lease, a cancel or a refusal raised as what the job run does about it."""
        backoff = Backoff(first=0.2, cap=5.0)
        first_try = time.monotonic()
        while True:
            self._check_halted()
            try:
                answer = await call()
            except AccessDenied:
                raise
            except ProtocolError as exc:
                if exc.lease_lost:
                    self.lose()
                    raise _Lost from exc
                if exc.status == 409 and exc.reason == "cancel_requested":
                    self.request_cancel()
                    raise _Cancelled from exc
                if exc.status == 409 and exc.reason == "pause_requested":
                    raise _Paused from exc
                if exc.status == 409 and exc.reason == "pause_not_requested":
                    raise _Resumed from exc
                if exc.status == 409 and "idempotency_key" in exc.details:
                    # The previous try is still being applied; its answer decides.
                    await self._pause(backoff.next())
                    continue
                raise _Rejected(str(exc)) from exc
            except Unavailable as exc:
                now = time.monotonic()
                if now >= self._lease_deadline:
                    log.warning("job %s: no report got through for a whole lease", self.job_id)
                    self.lose()
                    raise _Lost from exc
                # Heartbeats may keep the lease alive while this one request keeps failing.
                if now - first_try >= self.claim.lease.lease_s:
                    raise _Rejected(f"the server kept failing a report: {exc}") from exc
                delay = backoff.next()
                log.warning(
                    "job %s: report failed (%s); retrying in %.1fs", self.job_id, exc, delay
                )
                await self._pause(delay)
                continue
            self._lease_deadline = time.monotonic() + self.claim.lease.lease_s
            return answer

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halted.wait(), seconds)


async def read_chunks(fd: int, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The file's bytes, read `chunk_bytes` at a time off the event loop, so an upload holds
    one chunk of the file at a time; the descriptor is closed at the end."""
    try:
        while chunk := await asyncio.to_thread(os.read, fd, chunk_bytes):
            yield chunk
    finally:
        os.close(fd)


def _failure(finished: Finished, timeout_s: float | None) -> str | None:
    """Why the phase failed, or None when it completed."""
    if finished.start_error is not None:
        return finished.start_error
    if finished.timed_out:
        return f"timed out after {timeout_s:g} s"
    assert finished.exit_code is not None
    return None if finished.exit_code == 0 else reports.exit_error(finished.exit_code)
