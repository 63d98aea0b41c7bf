"""One subscriber's side of the tailer: a bounded buffer, its position, live or catching up.

A live subscription is fed by the tailer's fan-out. When its buffer is full the tailer switches
it to catch-up instead of growing the buffer or dropping the event: the subscription then reads
the log itself (from the tailer's recent events if they reach back far enough, else from the
database) while its consumer drains it, and rejoins the fan-out once it is at the tailer's
position. Everything runs on one event loop, so the switch back is a synchronous comparison of
positions, with no event in between missed or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from helix.database import database_unavailable
from helix.streams.filters import Filter
from helix.streams.frames import CaughtUp, Frame, Item

if TYPE_CHECKING:
    from helix.streams.tailer import Tailer

log = logging.getLogger(__name__)


@attrs.frozen
class Batch:
    """What a consumer gets at once: events (and the caught-up marker) in order, and whether a
    heartbeat is due (possibly neither, after a quiet rejoin). `closed`: the subscription has
    ended (shutdown, or `unavailable`: the database dropped); stop reading."""

    items: list[Item]
    heartbeat: bool = False
    closed: bool = False
    unavailable: str | None = None  # closed because the database cannot be read: why


class Subscription:
    def __init__(
        self, tailer: Tailer, filter: Filter, position: int, capacity: int, *, transport: str
    ) -> None:
        self.tailer = tailer
        self.transport = transport
        self.filter = filter
        # Everything up to here is in the buffer or was handed out; the next event is after it.
        self.position = position
        self.capacity = capacity
        self.live = False
        self.lagged = 0  # times the fan-out switched it to catch-up
        self._buffer: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._heartbeat = False
        self._announced = False
        self.closed = False
        self.unavailable: str | None = None  # why the server ended it, when the database dropped
        # A consumer that can hand a frame to its client at once, without waking its task
        # (returns False when it cannot, e.g. the socket is backed up: the frame is buffered).
        self.direct: Callable[[Frame], bool] | None = None
        # The consumer waits with nothing buffered: all it took is written, so a direct write
        # keeps the order.
        self._parked = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the tailer's side --------------------------------------------------------------------

    def offer(self, frame: Frame) -> bool:
        """Hand a frame straight to a parked consumer that writes directly, else buffer it
        unless the buffer is full."""
        if self._parked and self.direct is not None and not self._buffer and self.direct(frame):
            self.position = frame.position
            return True
        if len(self._buffer) >= self.capacity:
            return False
        self._buffer.append(frame)
        self.position = frame.position
        self._wake.set()
        return True

    def fall_behind(self, position: int) -> None:
        """Leave the fan-out; everything up to `position` is already buffered."""
        self.live = False
        self.lagged += 1
        self.position = position
        self._wake.set()

    def go_live(self) -> None:
        self.live = True
        if not self._announced:
            self._announced = True
            self._buffer.append(CaughtUp(self.position))
            self._wake.set()

    def poke(self) -> None:
        """The shared heartbeat timer: the consumer writes a keep-alive if it has nothing else."""
        self._heartbeat = True
        self._wake.set()

    def end_unavailable(self, exc: BaseException) -> None:
        """End the subscription because the database cannot be read: its consumer tells the
        client (who resumes later from its last position) instead of waiting for ever."""
        if not self.closed:
            self.unavailable = f"the database is not reachable ({type(exc).__name__})"
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake.set()
            self.tailer.unsubscribe(self)

    # --- the consumer's side ------------------------------------------------------------------

    async def next(self) -> Batch:
        """Wait for events (in log order, each once), a heartbeat, or the end."""
        backoff = 0.1
        while True:
            if self.closed:
                return Batch([], closed=True, unavailable=self.unavailable)
            if self._buffer or self._heartbeat:
                items = list(self._buffer)
                self._buffer.clear()
                heartbeat, self._heartbeat = self._heartbeat, False
                return Batch(items, heartbeat=heartbeat)
            if self.live:
                self._wake.clear()
                self._parked = True
                try:
                    await self._wake.wait()
                finally:
                    self._parked = False
                continue
            try:
                await self.tailer.catch_up(self)
                backoff = 0.1
                if self.live and not self._buffer:
                    return Batch([])  # rejoined with nothing new: let the consumer look
            except Exception as exc:
                if database_unavailable(exc):
                    self.end_unavailable(exc)
                    continue
                log.warning("catch-up read failed (%s); retrying in %.1fs", exc, backoff)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):  # not wait_for: see the tailer
                        await self._wake.wait()
                backoff = min(backoff * 2, 5.0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
