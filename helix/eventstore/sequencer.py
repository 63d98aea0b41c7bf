"""The sequencer: gives committed events dense, commit-ordered positions.

Why not a bigserial: sequence values are taken at insert time, but transactions commit in any
order. If T1 takes 10 and T2 takes 11 and T2 commits first, a reader that has seen 11 and
checkpoints there never sees 10. Positions must only be handed out for a set of rows that can
no longer grow below them.

The argument: in one statement we read the unsequenced rows together with the xmin of that
statement's own snapshot (`pg_snapshot_xmin(pg_current_snapshot())`), the oldest transaction id
still running. Every transaction with an id below xmin has finished, so its rows are either all
visible to this snapshot (committed) or will never be (rolled back); and every transaction that
has not yet written anything will get an id above the current xmin. So the rows with
`transaction_id < xmin` form a closed set, ordered by (transaction_id, id). Positions are dense
and final because they are handed out only here, to committed rows, in one statement that also
moves the head (see below), and a reader only sees them once that statement commits.

One more rule keeps each stream in version order. Transaction ids are taken at a transaction's
first write, not at its append: T2 may write something (taking id 100), then wait on the stream
row that T1 (id 101) holds, and append version 2 after T1 commits version 1. Ordered by id,
version 2 would come first, and if a third transaction with id 100.5 still runs, version 2
would even be eligible while version 1 is not. So a row is positioned only when every earlier
version of its stream already has a position or is positioned before it in the same batch; the
rest wait for a later batch. Within a batch each stream's rows take that stream's slots in
version order. "Already has a position" is read from `streams`, which holds each stream's
highest positioned version and is written in the same statement as the positions. If every
row of a full batch has to wait (older transactions appended later versions of streams whose
earlier versions lie past the batch's end), the batch reads further instead: otherwise the
same rows would fill every batch and the log would stop.

Where the scan starts: positioned rows leave entries in the unsequenced index until VACUUM, so
the leader keeps a lower bound and reads only `transaction_id >= lower`. It holds that no
committed row below `lower` lacks a position: after a batch whose snapshot had xmin X, `lower`
becomes X if every row the batch read got a position, else the id of the oldest transaction
with a row left behind (deferred by the rule above, or beyond the batch's size). Rows below X
can never appear later (their transactions had finished), so none is skipped. A new leader, or
one that lost track, starts again from 0.

The head: the leader remembers the head (position and hash) it last wrote instead of reading and
locking it every batch. The read and the write are two statements, and the write is a single
statement, so one implicit transaction: it sets the head to the batch's last position only if
the head is still where the leader left it (compare-and-set on `sequencer_state`), and writes
the positions and `streams` only if that succeeded. A second leader that overlapped, or an
import, moves the head; the write then changes nothing, and the leader forgets what it knew and
starts over from the table. So a write that lands had no other positioning between its read
and itself (that would have moved the head), and rows read as committed stay committed: the
batch is still exactly right.

Leadership is a session-level advisory lock on a dedicated connection (a transaction-scoped lock
would keep a transaction open and hold back the xmin horizon for everyone). The batches run on
that same connection, so when it dies the leadership goes with it, and a batch whose write did
not commit left nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import attrs

from helix.eventstore.chain import link
from helix.eventstore.sql import QUERIES
from helix.eventstore.wakeups import APPENDED, BUSY_BATCH, SEQUENCER_LINGER
from helix.supervisor import Supervisor

log = logging.getLogger(__name__)

LEADER_LOCK = 0x48454C4958_0001  # "HELIX" · 1


@attrs.frozen
class Batch:
    count: int  # events positioned
    full: bool  # as many eligible rows as a batch takes: more may be ready now
    waiting: bool  # committed rows left without a position, held back by a running transaction


class HeadMoved(Exception):
    """The head was not where this sequencer left it: another leader or an import moved it."""


class Sequencer:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        standby_interval: float = 0.5,
        min_batch_interval: float = 0.010,
        name: str | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._connect = connect
        self.supervisor = supervisor or Supervisor()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        # After a busy batch (BUSY_BATCH events or more) the next starts no sooner than
        # `min_batch_interval` after it: a batch costs much the same for one event as for
        # fifty, so under load this is what keeps the sequencer cheap, while a lone append at
        # light load is positioned at once. For SEQUENCER_LINGER after a busy batch the leader
        # also looks again every interval unasked, so that busy appenders can stop sending
        # wake-ups (wakeups.py).
        self.min_batch_interval = min_batch_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.is_leader = False
        self.batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # What this leader knows between batches (see the module docstring): the head it wrote
        # last, and a transaction id below which every committed row has a position.
        self._head: tuple[int, bytes] | None = None
        self._lower = 0

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = self.supervisor.start("sequencer", self.run)

    async def stop(self) -> None:
        await self.supervisor.stop([self._task])
        self._task = None

    async def run(self) -> None:
        """One connection's term: stand by, lead until the connection fails. Whatever ends it
        (a lost connection, or anything else) is the supervisor's to log and restart."""
        conn: asyncpg.Connection | None = None
        try:
            conn = await self._connect()
            await self._lead(conn)
        finally:
            self.is_leader = False
            self._forget()
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    def _forget(self) -> None:
        self._head = None
        self._lower = 0

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while not await conn.fetchval(QUERIES["try_lead"], LEADER_LOCK):  # noqa: ASYNC110
            await asyncio.sleep(self.standby_interval)
        self.is_leader = True
        log.info("sequencer %s is the leader", self.name)
        await conn.execute(QUERIES["sequencer_session"])
        await conn.add_listener(APPENDED, lambda *_: self._wake.set())
        loop = asyncio.get_running_loop()
        idle_delay = 0.001
        spaced_from = -math.inf
        busy_until = loop.time() + SEQUENCER_LINGER  # a new leader looks around first
        while True:
            self._wake.clear()
            started = loop.time()
            batch = await self._sequence(conn)
            if batch.full:
                continue
            if batch.count >= BUSY_BATCH:
                spaced_from = started
                busy_until = started + SEQUENCER_LINGER
            elif batch.count:
                spaced_from = -math.inf
            elif batch.waiting:
                # Committed rows wait behind a transaction still running; it may be one that
                # sends no wake-up, so look again soon, backing off while it lasts.
                await asyncio.sleep(idle_delay)
                idle_delay = min(idle_delay * 2, 0.05)
                continue
            idle_delay = 0.001
            # Lingering after a busy batch, look again every batch interval whether woken or
            # not; otherwise wait for a wake-up, or the slow poll.
            if started < busy_until:
                timeout = started + self.min_batch_interval - loop.time()
            else:
                timeout = self.poll_interval
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and stop() would then wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wake.wait()
            # Woken early: still no sooner than a batch interval after a busy batch, so that
            # under load each batch carries more.
            pause = spaced_from + self.min_batch_interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)

    async def _sequence(self, conn: asyncpg.Connection) -> Batch:
        try:
            return await self._batch(conn)
        except HeadMoved:
            log.warning("sequencer %s found the head moved; reading it again", self.name)
            self._forget()
            return Batch(count=0, full=False, waiting=True)

    async def _batch(self, conn: asyncpg.Connection) -> Batch:
        if self._head is None:
            head, head_hash = await conn.fetchrow(QUERIES["load_head"])
            self._head = (head, head_hash)
        head, head_hash = self._head
        limit = self.batch_size
        while True:
            fetched = await conn.fetch(QUERIES["next_committed"], limit, self._lower)
            xmin = fetched[0]["xmin"]
            if fetched[0]["event_id"] is None:
                self._lower = xmin
                return Batch(count=0, full=False, waiting=fetched[0]["waiting"])
            full = len(fetched) >= limit
            rows = order_batch(fetched)
            if rows or not full:
                break
            # Every row read waits for an earlier version of its stream past the end of the
            # batch (older transactions appended later versions): read further, or the same
            # rows would fill every batch for ever.
            limit *= 2
        # The next lower bound: xmin if every eligible row got a position, else the oldest
        # transaction with a row left behind (deferred, or past the batch's size).
        kept = {row["event_id"] for row in rows}
        deferred = [row["transaction_id"] for row in fetched if row["event_id"] not in kept]
        beyond = [fetched[-1]["transaction_id"]] if full else []
        lower = min(deferred + beyond, default=xmin)
        if rows:
            await self._write(conn, head, head_hash, rows)
        self._lower = lower
        return Batch(count=len(rows), full=full, waiting=bool(deferred))

    async def _write(
        self,
        conn: asyncpg.Connection,
        head: int,
        head_hash: bytes,
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        ids, positions, hashes = [], [], []
        streams: dict[str, Mapping[str, Any]] = {}
        for offset, row in enumerate(rows, start=1):
            position = head + offset
            head_hash = link(head_hash, position, row)
            ids.append(row["event_id"])
            positions.append(position)
            hashes.append(head_hash)
            streams[row["stream_id"]] = row  # the last is the highest version
        written = await conn.fetchrow(
            QUERIES["write_batch"],
            ids,
            positions,
            hashes,
            list(streams),
            [r["stream_type"] for r in streams.values()],
            [r["project_id"] for r in streams.values()],
            [r["version"] for r in streams.values()],
            head,
            positions[-1],
            head_hash,
            self.name,
        )
        if written is None:
            raise HeadMoved
        if written["positioned"] != len(ids):
            # Rows read as committed cannot vanish unless something outside Helix deleted
            # them; the head has moved past them all the same, so say so loudly.
            log.error(
                "sequencer %s positioned %d of %d events up to %d",
                self.name,
                written["positioned"],
                len(ids),
                positions[-1],
            )
        self._head = (positions[-1], head_hash)
        self.batches += 1


def order_batch(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of a batch that may be positioned now, in position order.

    `rows` come in (transaction_id, id) order, each with `after_positioned` (its predecessor in
    the stream has a position already). A stream's rows are kept as far as its versions run on
    without a gap from such a row; then each stream's kept rows are dealt into that stream's
    places in the batch in version order.
    """
    by_stream: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_stream[row["stream_id"]].append(row)
    kept: dict[str, list[Mapping[str, Any]]] = {}
    for stream, stream_rows in by_stream.items():
        run: list[Mapping[str, Any]] = []
        for row in sorted(stream_rows, key=lambda r: r["version"]):
            follows = (
                row["after_positioned"] if not run else row["version"] == run[-1]["version"] + 1
            )
            if not follows:
                break
            run.append(row)
        kept[stream] = run
    kept_ids = {row["event_id"] for run in kept.values() for row in run}
    dealt = {stream: iter(run) for stream, run in kept.items()}
    return [next(dealt[row["stream_id"]]) for row in rows if row["event_id"] in kept_ids]


async def sequencer_lag(db: asyncpg.Pool | asyncpg.Connection) -> tuple[float, int]:
    """Age in seconds of the oldest committed event without a position, and how many wait."""
    row = await db.fetchrow(QUERIES["sequencer_lag"])
    return float(row["lag"]), int(row["pending"])
