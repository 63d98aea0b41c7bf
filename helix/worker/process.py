"""Running one phase's command: a process group of its own, output streamed in batches, a
timeout, and stopping the whole group on request.

The command runs as argv (no shell) in a new session, so its process group holds it and every
process it starts; signals go to the group, never only to the leader, and whatever is left of
the group when the leader exits is stopped too. Given a phase user that is not the worker's
(`helix.worker.isolation`), it starts as that user, and once the group is gone every process of
that user is killed (`helix.worker.sweep`), so that what left the group (through setsid, say)
does not outlive the phase either. While the group runs it is recorded
(`helix.worker.leftovers`), so that it is ended even when the worker is killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from helix.worker import leftovers, procfs, usage
from helix.worker.isolation import PhaseUser
from helix.worker.reports import MAX_LINE_CHARS
from helix.worker.sweep import sweep

log = logging.getLogger(__name__)

# Output sink: called with ("stdout" | "stderr", lines), one batch at a time per stream.
OutputSink = Callable[[str, list[str]], Awaitable[None]]

_POLL_S = 0.05
# How often the phase's process group is sampled for its resource usage (the first sample
# comes sooner, for short phases).
SAMPLE_INTERVAL_S = 1.0
_FIRST_SAMPLE_S = 0.2
_READ_LIMIT = 2**16
# How long a pipe may stay open and quiet once the process group is gone, and at most.
_DRAIN_IDLE_S = 0.5
_DRAIN_MAX_S = 30.0


class Stop(enum.Enum):
    TERMINATE = "terminate"  # SIGTERM to the group, SIGKILL after the grace
    KILL = "kill"  # SIGKILL to the group at once


@attrs.frozen(kw_only=True)
class Command:
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    timeout_s: float | None = None
    user: PhaseUser | None = None  # None: as the worker's own user


@attrs.frozen(kw_only=True)
class OutputOptions:
    lines_per_event: int = 100
    flush_interval: float = 0.5
    stderr_tail: int = 20
    kill_grace: float = 5.0


@attrs.frozen(kw_only=True)
class Finished:
    """How a phase's process ended."""

    exit_code: int | None  # negative: killed by that signal; None: never started
    duration_s: float
    stderr_tail: tuple[str, ...] = ()
    timed_out: bool = False
    stopped: Stop | None = None  # stopped on request (cancel, lost lease, shutdown)
    start_error: str | None = None
    used: usage.Usage | None = None  # None: never started


class _Child:
    """The phase's leader: its two output pipes as stream readers, and its end.

    Not asyncio's subprocess transport: its child watcher reaps the leader with waitpid, which
    loses what the kernel knows of the leader's resource usage. Here a thread waits for the
    leader to exit without reaping it (waitid with WNOWAIT), reads the zombie's figures from
    /proc and reaps it with wait4, which gives its rusage. (Not
    asyncio.subprocess.Process either: before Python 3.12 its wait() also waits for the pipes
    to close, which a process that left the group can hold open for ever.)"""

    def __init__(self, popen: subprocess.Popen[bytes], ceiling: int) -> None:
        self.popen = popen
        # The worker's peak memory once the leader started: what its exit figure must pass.
        self.ceiling = ceiling
        self.pid = popen.pid
        self.stdout = asyncio.StreamReader(limit=_READ_LIMIT)
        self.stderr = asyncio.StreamReader(limit=_READ_LIMIT)
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self.usage: usage.Usage | None = None  # the leader's last figures, once reaped
        self._pipes: list[asyncio.BaseTransport] = []

    async def connect(self) -> None:
        """Read the pipes and watch for the leader's exit."""
        loop = asyncio.get_running_loop()
        for pipe, reader in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            assert pipe is not None
            transport, _ = await loop.connect_read_pipe(
                functools.partial(asyncio.StreamReaderProtocol, reader), pipe
            )
            self._pipes.append(transport)
        threading.Thread(
            target=self._wait, args=(loop,), name=f"phase-{self.pid}-exit", daemon=True
        ).start()

    def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the thread: wait for the leader's exit, read its zombie's figures, reap it with
        wait4; then hand the outcome to the loop (whatever happened, so `exited` is set)."""
        last: usage.Usage | None = None
        ended: tuple[int, usage.Usage] | None = None
        try:
            with contextlib.suppress(OSError):  # without waitid: reaped below, unread
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                last = usage.of_process(self.pid)
            _, status, used = os.wait4(self.pid, 0)
            ended = (os.waitstatus_to_exitcode(status), usage.of_rusage(used, self.ceiling))
        except ChildProcessError:  # reaped by someone else: its exit status is unknown
            log.warning("the phase's process %d was reaped by another", self.pid)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker is gone
                loop.call_soon_threadsafe(self._reaped, last, ended)

    def _reaped(self, last: usage.Usage | None, ended: tuple[int, usage.Usage] | None) -> None:
        if ended is None:
            self.returncode = 255
        else:
            self.returncode, leader = ended
            self.usage = leader if last is None else leader.most(last)
        self.popen.returncode = self.returncode  # nothing else is to wait for it
        self.exited.set()

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.close()


class PhaseProcess:
    """One run of one command. `stop()` may be called at any time, also before `run()`."""

    def __init__(
        self,
        command: Command,
        sink: OutputSink,
        options: OutputOptions,
        running: Path | None = None,
    ) -> None:
        self.command = command
        # Where the group is recorded while it runs, for the worker's guard and its successor
        # (`helix.worker.leftovers`); None: not recorded.
        self._running = running
        self.options = options
        self._sink = sink
        self._stop_requested = asyncio.Event()
        self._how = Stop.TERMINATE
        self._group_gone = asyncio.Event()
        self._gone_at = 0.0
        self._tail: collections.deque[str] = collections.deque(maxlen=options.stderr_tail)
        self._meter = usage.Meter()

    def stop(self, how: Stop = Stop.TERMINATE) -> None:
        if how is Stop.KILL or not self._stop_requested.is_set():
            self._how = how
        self._stop_requested.set()

    async def run(self) -> Finished:
        started = time.monotonic()
        if self._stop_requested.is_set():
            return Finished(exit_code=None, duration_s=0.0, stopped=self._how)
        try:
            # Started in the loop, as asyncio's own subprocess_exec does (a fork and exec take
            # a few milliseconds); from a thread, a cancellation could leave it unknown.
            popen = subprocess.Popen(  # noqa: ASYNC220
                self.command.argv,
                cwd=self.command.cwd,
                env=dict(self.command.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **(self.command.user.process_options() if self.command.user else {}),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return Finished(
                exit_code=None,
                duration_s=time.monotonic() - started,
                start_error=f"could not start {self.command.argv[0]!r}: {exc}",
            )
        child = _Child(popen, usage.own_high_water())
        try:
            await child.connect()
        except BaseException:
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
            child.close()
            raise
        loop = asyncio.get_running_loop()
        pid = child.pid
        held = self._record(pid)
        sampler = asyncio.create_task(self._sample(pid, child))
        pumps = [
            asyncio.create_task(self._pump(child.stdout, "stdout")),
            asyncio.create_task(self._pump(child.stderr, "stderr")),
        ]
        swept = False
        try:
            timed_out = await self._supervise(pid, child, pumps)
            self._gone_at = loop.time()
            self._group_gone.set()
            # Before draining the pipes: a process that left the group may be holding them.
            await self._sweep()
            swept = True
            await asyncio.gather(*pumps)
        except BaseException:
            # A failed sink or a cancelled run: nothing of the phase may go on running.
            _signal_group(pid, signal.SIGKILL)
            raise
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await asyncio.shield(child.exited.wait())
            sampler.cancel()
            child.close()
            if not swept:
                await asyncio.shield(self._sweep())
            if held is not None:
                held.remove()
        exit_code = child.returncode
        assert exit_code is not None
        if child.usage is not None:
            self._meter.add(child.usage)
        stopped = self._how if self._stop_requested.is_set() and not timed_out else None
        return Finished(
            exit_code=exit_code,
            duration_s=time.monotonic() - started,
            stderr_tail=tuple(self._tail),
            timed_out=timed_out,
            stopped=stopped,
            used=self._meter.usage,
        )

    @property
    def used(self) -> usage.Usage:
        """What the phase's processes have used so far, as last sampled."""
        return self._meter.usage

    async def _sample(self, pgid: int, child: _Child) -> None:
        wait = _FIRST_SAMPLE_S
        while not child.exited.is_set():
            await asyncio.sleep(wait)
            wait = SAMPLE_INTERVAL_S
            # In a thread: a scan of /proc takes milliseconds the output pumps should not wait.
            self._meter.add(await asyncio.to_thread(usage.sample, pgid))

    def _record(self, pgid: int) -> leftovers.Held | None:
        if self._running is None:
            return None
        user = self.command.user
        try:
            return leftovers.record(
                self._running,
                pgid,
                uid=os.geteuid() if user is None else user.uid,
                argv0=self.command.argv[0],
                cwd=self.command.cwd,
            )
        except OSError as exc:
            log.warning("could not record the process group of %s: %s", self.command.argv[0], exc)
            return None

    async def _sweep(self) -> None:
        if self.command.user is not None:
            await sweep(self.command.user)

    async def _supervise(
        self, pid: int, child: _Child, pumps: Sequence[asyncio.Task[None]]
    ) -> bool:
        """Wait for the leader to exit, the timeout or a stop; then make sure the whole group
        is gone. True when the timeout ended it."""
        loop = asyncio.get_running_loop()
        timeout = self.command.timeout_s
        deadline = None if timeout is None else loop.time() + timeout
        exited = asyncio.ensure_future(child.exited.wait())
        stop = asyncio.ensure_future(self._stop_requested.wait())
        watched: set[asyncio.Future[Any]] = {exited, stop, *pumps}
        timed_out = False
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if exited in done or stop in done:
                    break
                if not done:
                    timed_out = True
                    log.info("%s timed out after %gs", self.command.argv[0], timeout)
                    break
                if any(p.exception() is not None for p in done if p in pumps):
                    # The sink failed (e.g. the lease was lost): nothing more may run.
                    self.stop(Stop.KILL)
                    break
                watched -= done
        finally:
            stop.cancel()
            exited.cancel()
        await self._terminate(pid, child)
        return timed_out

    async def _terminate(self, pid: int, child: _Child) -> None:
        """Stop what is left of the group: SIGTERM, then SIGKILL once the grace has passed
        (at once for Stop.KILL)."""

        def alive() -> bool:
            return not child.exited.is_set() or group_alive(pid)

        if not alive():
            return
        if self._stop_requested.is_set() and self._how is Stop.KILL:
            _signal_group(pid, signal.SIGKILL)
        else:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.options.kill_grace
            while time.monotonic() < deadline and alive():
                if self._stop_requested.is_set() and self._how is Stop.KILL:
                    break
                await asyncio.sleep(_POLL_S)
            _signal_group(pid, signal.SIGKILL)
        await child.exited.wait()

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        """Read `stream` in chunks of whole lines; hand lines to the sink in batches of at most
        `lines_per_event`, or sooner once `flush_interval` has passed since a batch's first
        line. A batch is handed on before the next one is started, so they arrive in order;
        the sink is expected to return at once (`helix.worker.outbox`), so the pipe is read
        continuously and the phase never waits for its output to be reported."""
        loop = asyncio.get_running_loop()
        size = self.options.lines_per_event
        splitter = LineSplitter()
        batch: list[str] = []
        flush_at = 0.0
        last_read = loop.time()
        # The splitter holds a partial line, so a read cancelled at the end loses nothing.
        read: asyncio.Task[list[str] | None] | None = None
        gone = asyncio.ensure_future(self._group_gone.wait())
        try:
            while True:
                if read is None:
                    read = asyncio.create_task(read_lines(reader, splitter))
                give_up_at = self._give_up_reading_at(last_read)
                deadlines = [t for t in (flush_at if batch else None, give_up_at) if t is not None]
                timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
                waiting: set[asyncio.Future[Any]] = {read} if gone.done() else {read, gone}
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                now = loop.time()
                if read in done:
                    lines = read.result()
                    read, last_read = None, now
                    if lines is None:
                        break
                    if stream == "stderr":
                        self._tail.extend(lines)
                    if not batch:
                        flush_at = now + self.options.flush_interval
                    batch += lines
                    while len(batch) >= size:
                        await self._sink(stream, batch[:size])
                        del batch[:size]
                        flush_at = now + self.options.flush_interval
                    continue
                if batch and now >= flush_at:
                    await self._sink(stream, batch)
                    batch = []
                give_up_at = self._give_up_reading_at(last_read)
                if give_up_at is not None and now >= give_up_at:
                    log.warning(
                        "%s of %s is held open by a process outside its group; not read further",
                        stream,
                        self.command.argv[0],
                    )
                    break
        finally:
            gone.cancel()
            if read is not None:
                read.cancel()
        if batch:
            await self._sink(stream, batch)

    def _give_up_reading_at(self, last_read: float) -> float | None:
        # Once the group is gone its output is already in the pipe: a pipe that stays open
        # and quiet is held by a process that left the group (e.g. through setsid).
        if not self._group_gone.is_set():
            return None
        return min(max(last_read, self._gone_at) + _DRAIN_IDLE_S, self._gone_at + _DRAIN_MAX_S)


class LineSplitter:
    """Bytes in, lines out: each line without its line ending, at most `max_chars` characters
    (the rest of a longer line is dropped as it arrives, so memory stays bounded)."""

    def __init__(self, max_chars: int = MAX_LINE_CHARS) -> None:
        self._max_chars = max_chars
        self._keep = max_chars * 4  # UTF-8 takes at most 4 bytes a character
        self._partial = bytearray()
        self._open = False  # a line has begun and not ended

    def feed(self, data: bytes) -> list[str]:
        *ended, rest = data.split(b"\n")
        lines = []
        for part in ended:
            if self._partial:
                self._add(part)
                part = bytes(self._partial)
                self._partial.clear()
            lines.append(self._line(part, ended=True))
        self._open = bool(rest) or (self._open and not ended)
        self._add(rest)
        return lines

    def end(self) -> list[str]:
        """The last line, if it lacked a newline."""
        if not self._open:
            return []
        line = self._line(bytes(self._partial), ended=False)
        self._partial.clear()
        self._open = False
        return [line]

    def _add(self, part: bytes) -> None:
        room = self._keep - len(self._partial)
        if room > 0:
            self._partial += part[:room]

    def _line(self, raw: bytes, *, ended: bool) -> str:
        if ended and raw.endswith(b"\r"):
            raw = raw[:-1]
        # NUL cannot be stored in PostgreSQL's jsonb, where the server keeps output.
        text = raw[: self._keep].decode("utf-8", errors="replace")[: self._max_chars]
        return text.replace("\x00", "\ufffd")


async def read_lines(reader: asyncio.StreamReader, splitter: LineSplitter) -> list[str] | None:
    """The next whole lines the reader has (at least one); at the end, the last line if it
    lacked a newline, then None."""
    while True:
        chunk = await reader.read(_READ_LIMIT)
        if not chunk:
            return splitter.end() or None
        lines = splitter.feed(chunk)
        if lines:
            return lines


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie does not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not os.path.isdir("/proc") or bool(procfs.group_members(pgid))


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
