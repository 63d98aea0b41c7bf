"""Wake-ups between appenders, the sequencer and everyone who follows the log.

A transaction that NOTIFYs takes a database-wide lock at commit, which would serialize every
appender. So appends never NOTIFY: after a commit the process calls `WakeUps.signal()`, which
sends at most one `helix_appended` notification per interval however many appends committed.
A commit that may interest other listeners (claimers waiting for a job) names their channels,
and the same coalesced wake-up notifies those too. The sequencer NOTIFYs `helix_head` with the
new head position once per batch. Notifications are
hints: every waiting loop also polls on a slow timer, so a lost one only delays.

Under heavy load even the coalesced wake-ups are waste: each is a transaction with a commit to
flush, and the leader then spaces its batches anyway. So after a busy batch (BUSY_BATCH events
or more) the leader looks again on its own every batch interval until SEQUENCER_LINGER has
passed; and a process whose head watcher heard, within RECENT_HEAD, the head advance by such a
batch sends no wake-up. At lighter load nothing is skipped, so a lone append is positioned at once.
A skipped wake-up that turns out to have been needed costs at most a batch interval while the
leader lingers, and its slow poll beyond.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from helix.eventstore.sql import QUERIES
from helix.supervisor import Supervisor

APPENDED = "helix_appended"
HEAD = "helix_head"
# Seconds a leader keeps looking by itself after a busy batch.
SEQUENCER_LINGER = 0.2
# A batch of at least this many events means writers keep the leader busy: it spaces its
# batches and looks by itself.
BUSY_BATCH = 8
# A busy head notification younger than this means the leader is looking by itself. Longer
# than the sequencer's batch interval (so it holds under load), far shorter than the linger (so
# a late notification still falls inside it).
RECENT_HEAD = 0.02


class WakeUps:
    """Coalesced post-commit wake-ups for the sequencer."""

    def __init__(
        self, pool: asyncpg.Pool, interval: float, *, supervisor: Supervisor | None = None
    ) -> None:
        self._pool = pool
        self._supervisor = supervisor or Supervisor()
        self._interval = interval
        self._pending = asyncio.Event()
        self._channels: set[str] = set()  # further channels due with the next wake-up
        self._task: asyncio.Task[None] | None = None
        # Sequencers in this process are woken directly as well, skipping the round trip.
        self.local: list[Callable[[], None]] = []
        # The process's head watcher, if it has one (see the module docstring).
        self.head: HeadWatcher | None = None

    def signal(self, channels: Iterable[str] = ()) -> None:
        for wake in self.local:
            wake()
        self._channels.update(channels)
        if self._channels:
            self._pending.set()  # others wait on these, however busy the leader is
            return
        if self.head is not None and self.head.busy_within(RECENT_HEAD):
            return  # the leader is busy and looking by itself
        self._pending.set()

    async def start(self) -> None:
        self._task = self._supervisor.start("wakeups", self._run)

    async def stop(self) -> None:
        await self._supervisor.stop([self._task])
        self._task = None

    async def _run(self) -> None:
        """Send wake-ups until stopped. A failed one (the database down or the connection
        dropped) is kept for the next try and ends the loop, for the supervisor to restart
        after its backoff; meanwhile every waiting loop's poll covers it."""
        loop = asyncio.get_running_loop()
        while True:
            await self._pending.wait()
            self._pending.clear()
            channels, self._channels = sorted(self._channels), set()
            started = loop.time()
            try:
                await self._pool.execute(QUERIES["wake_sequencer"], [APPENDED, *channels])
            except BaseException:
                self._channels.update(channels)
                self._pending.set()
                raise
            remaining = self._interval - (loop.time() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)


class Listening:
    """One LISTEN connection kept open for a process, run as the supervised role `role`: a lost
    connection, or a failed catch-up, ends the run and the supervisor reconnects after its
    backoff (and reports the role's state). After each (re)connect, and every `poll_interval`
    while connected (if set), it calls `catch_up`, since a notification may have been sent
    while nobody listened, or lost."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        on_notify: Callable[[Any, int, str, str], None],
        catch_up: Callable[[], Awaitable[None]],
        poll_interval: float | None = None,
        *,
        role: str,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._role = role
        self._supervisor = supervisor or Supervisor()
        self._connect = connect
        self._channel = channel
        self._on_notify = on_notify
        self._catch_up = catch_up
        self._poll_interval = poll_interval
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        self._task = self._supervisor.start(self._role, self._run)

    async def stop(self) -> None:
        await self._supervisor.stop([self._task])
        self._task = None
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _listen(self) -> asyncpg.Connection:
        self._lost.clear()
        conn: asyncpg.Connection = await self._connect()
        conn.add_termination_listener(lambda _conn: self._lost.set())
        await conn.add_listener(self._channel, self._on_notify)
        return conn

    async def _run(self) -> None:
        try:
            self._conn = await self._listen()
            while not self._lost.is_set() and not self._conn.is_closed():
                await self._catch_up()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await self._lost.wait()
            raise ConnectionError(f"the connection listening on {self._channel} was lost")
        finally:
            await self._close()


class HeadWatcher:
    """Follows the log's head through `helix_head` notifications, with a polling fallback.

    Holds one LISTEN connection for the process and reconnects with backoff when it is lost.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        pool: asyncpg.Pool,
        poll_interval: float = 1.0,
        *,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._pool = pool
        self.head = 0
        self._changed = asyncio.Condition()
        self.listeners: list[Callable[[int], None]] = []
        self._busy_at = -math.inf
        self._advancing: set[asyncio.Task[None]] = set()
        self._listening = Listening(
            connect,
            HEAD,
            self._on_notify,
            self._refresh,
            poll_interval,
            role="head-watcher",
            supervisor=supervisor,
        )

    async def start(self) -> None:
        await self._refresh()
        await self._listening.start()

    async def stop(self) -> None:
        await self._listening.stop()

    async def wait_for(self, position: int, timeout: float | None = None) -> bool:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.head >= position)

        try:
            async with asyncio.timeout(timeout):  # not wait_for: see Sequencer._lead
                await reached()
        except TimeoutError:
            return False
        return True

    async def _advance(self, head: int) -> None:
        if head <= self.head:
            return
        self.head = head
        async with self._changed:
            self._changed.notify_all()
        for listener in self.listeners:
            listener(head)

    async def _refresh(self) -> None:
        value = await self._pool.fetchval(QUERIES["head"])
        await self._advance(int(value))

    def busy_within(self, seconds: float) -> bool:
        """Whether a notification within the last `seconds` advanced the head by a busy batch
        (polls do not count: they may find an advance long after it happened)."""
        return asyncio.get_running_loop().time() - self._busy_at < seconds

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            head = int(payload)
            loop = asyncio.get_running_loop()
            if head - self.head >= BUSY_BATCH:
                self._busy_at = loop.time()
            task = loop.create_task(self._advance(head))
            self._advancing.add(task)
            task.add_done_callback(self._advancing.discard)


class ChannelWatcher:
    """Counts the notifications of one channel (one LISTEN connection per process) so any
    number of waiters can sleep until the next one. After a reconnect it bumps the count once,
    since a notification may have been missed meanwhile."""

    def __init__(
        self, connect: Callable[[], Any], channel: str, *, supervisor: Supervisor | None = None
    ) -> None:
        self.count = 0
        self._changed = asyncio.Condition()
        self._listening = Listening(
            connect,
            channel,
            self._on_notify,
            self._bump,
            role=f"listen-{channel}",
            supervisor=supervisor,
        )

    async def start(self) -> None:
        await self._listening.start()

    async def stop(self) -> None:
        await self._listening.stop()

    async def wait(self, seen: int, timeout: float) -> int:
        """Wait until the count passes `seen` or `timeout` seconds pass; the count then."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.count > seen)
        return self.count

    async def _bump(self) -> None:
        self.count += 1
        async with self._changed:
            self._changed.notify_all()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        asyncio.get_running_loop().create_task(self._bump())
