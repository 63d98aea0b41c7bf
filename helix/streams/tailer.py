"""The one tailer of a process: reads each new stretch of the log once and fans it out.

It follows the head through the process's HeadWatcher (one LISTEN connection, reconnected with
backoff, polled as a fallback) and reads new events with one query per batch, so the database
work per event does not depend on how many subscribers there are. It also reads on a slow timer
of its own, the safety net for a head change it was never told about. A read that fails (lost
connection, PostgreSQL restarting) ends the tailer's run, which its supervisor restarts with
backoff from the last position fanned out.

Subscribers are indexed by scope (a job's stream, a project, everything) so an event is only
matched against the subscribers that could want it. The last `recent` events are kept so that
a subscriber that fell a little behind rejoins without touching the database. Every batch also
goes first to `revocations`, which closes the streams whose credentials it revokes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import asyncpg

from helix.access import PROJECT_CREATED, Ownership
from helix.database import database_unavailable
from helix.eventstore import EventStore, HeadWatcher
from helix.streams.filters import Filter, ScopeKind
from helix.streams.frames import Frame
from helix.streams.revocation import Revocations
from helix.streams.subscriptions import Subscription
from helix.supervisor import Supervisor
from helix.tasks import cancel_and_wait

TRANSPORTS = ("sse", "websocket")


class Tailer:
    def __init__(
        self,
        store: EventStore,
        watcher: HeadWatcher | None = None,
        *,
        batch_size: int = 1000,
        buffer_size: int = 1000,
        recent: int = 4096,
        poll_interval: float = 5.0,
        ownership: Ownership | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.watcher = watcher if watcher is not None else store.head_watcher
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.poll_interval = poll_interval
        self.ownership = ownership or Ownership(store.pool)
        self.revocations = Revocations(store.registry.decode)
        self.position = 0  # every event up to here has been fanned out
        self.reads = 0  # the tailer's own log reads (the per-event database work)
        self.catch_up_reads = 0  # reads made for subscribers that fell behind the recent events
        self._recent: deque[Frame] = deque(maxlen=max(recent, 1))
        self._by_stream: dict[str, set[Subscription]] = {}
        self._by_project: dict[uuid.UUID, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.position = await self.store.head()
        if self.watcher is not None:
            self.watcher.listeners.append(self._on_head)
        self._task = self.supervisor.start("stream-tailer", self._run)

    async def stop(self) -> None:
        self.close_all()
        if self.watcher is not None and self._on_head in self.watcher.listeners:
            self.watcher.listeners.remove(self._on_head)
        await self.supervisor.stop([self._task])
        self._task = None

    def close_all(self) -> None:
        for sub in list(self.subscriptions()):
            sub.close()

    # --- subscribers --------------------------------------------------------------------------

    def subscribe(
        self, filter: Filter, after: int | None = None, *, transport: str = "sse"
    ) -> Subscription:
        """Events matching `filter` after position `after` (None: from now on), for a client
        on `transport` (`sse` or `websocket`, as the metrics count them)."""
        start = self.position if after is None else after
        sub = Subscription(self, filter, start, self.buffer_size, transport=transport)
        self._index(sub).add(sub)
        if start >= self.position:
            sub.go_live()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._index(sub).discard(sub)
        scope = sub.filter.scope
        if scope.kind is ScopeKind.JOB and not self._by_stream.get(str(scope.stream_id)):
            self._by_stream.pop(str(scope.stream_id), None)
        elif scope.kind is ScopeKind.PROJECT and scope.id and not self._by_project.get(scope.id):
            self._by_project.pop(scope.id, None)

    def _index(self, sub: Subscription) -> set[Subscription]:
        scope = sub.filter.scope
        if scope.kind is ScopeKind.JOB:
            return self._by_stream.setdefault(str(scope.stream_id), set())
        if scope.kind is ScopeKind.PROJECT:
            assert scope.id is not None
            return self._by_project.setdefault(scope.id, set())
        return self._everything

    def subscriptions(self) -> Iterable[Subscription]:
        return itertools.chain(
            self._everything, *self._by_stream.values(), *self._by_project.values()
        )

    def subscribers(self) -> dict[str, int]:
        """Open subscriptions by transport (every transport named)."""
        counts = dict.fromkeys(TRANSPORTS, 0)
        for sub in self.subscriptions():
            counts[sub.transport] = counts.get(sub.transport, 0) + 1
        return counts

    def queries(self) -> int:
        """Every query the streams made: log reads, catch-up reads, owner look-ups."""
        return self.reads + self.catch_up_reads + self.ownership.lookups

    def buffered(self) -> int:
        """Events held in subscribers' buffers now (at most subscribers times buffer size)."""
        return sum(sub.buffered for sub in self.subscriptions())

    def _candidates(self, frame: Frame) -> Iterable[Subscription]:
        by_stream = self._by_stream.get(frame.stream_id, ())
        by_project = self._by_project.get(frame.project_id, ()) if frame.project_id else ()
        return itertools.chain(self._everything, by_stream, by_project)

    # --- following the log --------------------------------------------------------------------

    def _on_head(self, head: int) -> None:
        if head > self.position:
            self._wake.set()

    async def _run(self) -> None:
        """Follow the log until stopped. A read that fails ends the run; the supervisor starts
        it again after its backoff, and it resumes in place (from `position`)."""
        while True:
            try:
                await self._drain()
            except Exception as exc:
                if database_unavailable(exc):
                    # Its subscribers are told and end, rather than wait with no end in sight;
                    # each resumes from its last position once the database is back.
                    for sub in list(self.subscriptions()):
                        sub.end_unavailable(exc)
                raise
            if self.watcher is not None and self.watcher.head > self.position:
                continue
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def _drain(self) -> None:
        while True:
            self.reads += 1
            events = await self.store.read_public(self.position, self.batch_size)
            if not events:
                return
            frames = await self.frames(events)
            self._publish(frames)
            if len(events) < self.batch_size:
                return

    async def frames(self, rows: Sequence[asyncpg.Record]) -> list[Frame]:
        """`read_public` rows as frames with their project's owner (owners learnt from the
        events themselves first)."""
        for row in rows:
            if row["type"] == PROJECT_CREATED:
                self.ownership.observe(Frame(row, None).event)
        ids = {r["project_id"] for r in rows if r["project_id"] is not None}
        owners = await self.ownership.owners(ids) if ids else {}
        return [Frame(r, owners.get(r["project_id"]) if r["project_id"] else None) for r in rows]

    def _publish(self, frames: list[Frame]) -> None:
        """Synchronous from the first frame to the new position: no subscriber can join or
        rejoin halfway through a batch."""
        frames = [f for f in frames if f.position > self.position]
        if not frames:
            return
        self._recent.extend(frames)
        # Streams whose credentials this batch revokes are closed (and unsubscribed) first, so
        # not even the revoking event reaches them; a client resuming under new credentials
        # from its last id misses nothing.
        self.revocations.observe(frames)
        for frame in frames:
            for sub in self._candidates(frame):
                if not (sub.live and frame.position > sub.position):
                    continue
                if sub.filter.matches(frame) and not sub.offer(frame):
                    sub.fall_behind(frame.position - 1)
        self.position = frames[-1].position
        for sub in self.subscriptions():
            if sub.live and sub.position < self.position:
                sub.position = self.position

    # --- catching up --------------------------------------------------------------------------

    async def catch_up(self, sub: Subscription) -> None:
        """Move a subscription that is not live forward; called by it when its buffer is empty.
        From the recent events if they reach back to it, else one read of the database."""
        if sub.position >= self.position:
            sub.go_live()
            return
        if self._replay_recent(sub):
            return
        target = self.position
        limit = min(sub.capacity, self.batch_size)
        self.catch_up_reads += 1
        events = await self.store.read_public(sub.position, limit, **sub.filter.read_args())
        kept = [e for e in events if e["position"] <= target]
        for frame in await self.frames(kept):
            if sub.closed or sub.position >= frame.position:
                continue
            if sub.filter.matches(frame):
                sub.offer(frame)
        if len(events) < limit or len(kept) < len(events):
            # Nothing else matches up to the read's snapshot, which is past `target`; later
            # events come from the tailer (`target` is at most its position).
            sub.position = max(sub.position, target)
        elif kept:
            sub.position = max(sub.position, kept[-1]["position"])

    def _replay_recent(self, sub: Subscription) -> bool:
        if not self._recent or self._recent[0].position > sub.position + 1:
            return False
        start = sub.position + 1 - self._recent[0].position
        for frame in itertools.islice(self._recent, start, None):
            if sub.filter.matches(frame) and not sub.offer(frame):
                sub.position = frame.position - 1
                return True
        sub.position = self.position
        sub.go_live()
        return True


class Heartbeat:
    """One timer for every connection: each tick pokes every registered callback."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._callbacks: set[Callable[[], None]] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.add(callback)

    def discard(self, callback: Callable[[], None]) -> None:
        self._callbacks.discard(callback)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="helix-stream-heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for callback in list(self._callbacks):
                callback()
