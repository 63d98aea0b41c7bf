"""The sequencer: gives committed events dense, commit-ordered positions.

Why not a bigserial: sequence values are taken at insert time, but transactions commit in any
order. If T1 takes 10 and T2 takes 11 and T2 commits first, a reader that has seen 11 and
checkpoints there never sees 10. Positions must only be handed out for a set of rows that can
no longer grow below them.

The argument. A transaction that appends holds the append lock, a shared transaction-level
advisory lock in the log's database, from before it has a transaction id until it ends. The
INSERT takes it (`helix_append_lock()`, in its FROM list) before its first row; a transaction
that writes something else first takes it at its start (`EventStore.begin_appending`); the
function refuses a transaction that has an id but not the lock. (A savepoint that took the
lock and rolls back drops it, with the rows written under it, and the transaction may append
no more.) Row ids are the top-level transaction's, also in a savepoint.

A batch positions the committed rows below a horizon, ordered by (transaction_id, id), and
a horizon is sound if those rows form a closed set: every row below it that the batch's
snapshot does not show will never commit. There are two. The first is the xmin of the
batch's own snapshot, read in the same statement: the oldest transaction still running
anywhere on the server, so every transaction below it has ended, and a transaction that has
not yet written anything will get an id above it. It is free, and it is the one used until
committed rows wait behind a running transaction. That transaction may not append at all (a
psql session, a batch job, anything in another database of the server, or a Helix
transaction that writes only read models or deliveries), and it must not stall the log, so
the leader then reads the second, H, in a horizon statement of its own before the batch's:
the oldest id among the holders of the append lock that the horizon statement's snapshot
shows running, or that snapshot's xmax N if none is (advisory locks belong to one database,
so Helix in another database holds its own). Take any row with id x < H, of a transaction T.
x < N, so T had its id before that snapshot was taken, and the lock before that. Were T still
running when the horizon statement ended, it would have been running throughout: a holder
when the statement read pg_locks (a transaction releases its locks after it has ended), with
its id x published (pg_stat_activity's backend_xid, set as an id is assigned) and shown
running by the snapshot, so H <= x. So T had ended before the horizon statement did, and the
batch's later snapshot sees it ended: if it committed, its rows are all visible, else they
never will be. A prepared transaction keeps
its locks and its id (read from its lock on that id), so it counts as running too. The
leader keeps reading H before every batch while it passes the xmin, and stops once it no
longer does.

Positions are dense and final because they are handed out only here, to committed rows, in
one statement that also moves the head (see below), and a reader only sees them once that
statement commits. Where committed rows do wait, they wait for a running append transaction,
and `blocked_by` names it.

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
committed row below `lower` lacks a position: after a batch below a horizon, `lower` becomes
that horizon if every row the batch read got a position, else the id of the oldest
transaction with a row left behind (deferred by the rule above, or beyond the batch's size).
Rows below a sound horizon can never appear later, so none is skipped. An xmin may lie below
an H read earlier; `lower` then stays where it was, since each bound holds. A new leader, or
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
    blocker: Blocker | None = None  # the oldest append transaction running, if rows wait


@attrs.frozen
class Horizon:
    upto: int  # the oldest running append transaction's id, or the snapshot's xmax
    blocker: Blocker | None  # that transaction, if one runs


@attrs.frozen(kw_only=True)
class Blocker:
    """A running append transaction that committed events wait for."""

    pid: int | None  # None for a prepared transaction
    application_name: str | None
    age_seconds: float | None  # None where the server does not show its start to Helix's role
    transaction_id: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Blocker:
        age = row["age"]
        return cls(
            pid=row["pid"],
            application_name=row["application_name"],
            age_seconds=None if age is None else round(float(age), 3),
            transaction_id=int(row["xid"]),
        )

    def report(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "application_name": self.application_name,
            "age_seconds": self.age_seconds,
        }

    def __str__(self) -> str:
        age = "" if self.age_seconds is None else f", open {self.age_seconds:.1f} s"
        return f"pid {self.pid} ({self.application_name or 'no application_name'}{age})"


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
        blocked_log_after: float = 5.0,
        blocked_log_interval: float = 60.0,
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
        # Committed events that wait this long for a running append transaction are logged
        # with its pid, application_name and age, at most once per `blocked_log_interval`.
        self.blocked_log_after = blocked_log_after
        self.blocked_log_interval = blocked_log_interval
        self._waiting_since: float | None = None
        self._blocked_logged = -math.inf
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.is_leader = False
        self.batches = 0  # batches written
        self.waits = 0  # batches that found committed events waiting for a running transaction
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # What this leader knows between batches (see the module docstring): the head it wrote
        # last, and a transaction id below which every committed row has a position.
        self._head: tuple[int, bytes] | None = None
        self._lower = 0
        self._precise = False  # read the append transactions' horizon before each batch

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
        self._precise = False

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
            self._note_wait(batch, started)
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

    def _note_wait(self, batch: Batch, now: float) -> None:
        """Log, rate-limited, the append transaction that committed events have waited for."""
        if batch.waiting:
            self.waits += 1
        if not batch.waiting or batch.blocker is None:
            self._waiting_since = None
            return
        if self._waiting_since is None:
            self._waiting_since = now
        if (
            now - self._waiting_since >= self.blocked_log_after
            and now - self._blocked_logged >= self.blocked_log_interval
        ):
            self._blocked_logged = now
            log.warning(
                "sequencer %s: committed events have waited %.1f s for append transaction %s",
                self.name,
                now - self._waiting_since,
                batch.blocker,
            )

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
        horizon = await self._horizon(conn) if self._precise else None
        batch = await self._position(conn, horizon)
        if horizon is None and batch.waiting and not batch.count:
            # Held back by a running transaction: if it is not appending, the horizon of the
            # append transactions passes it.
            horizon = await self._horizon(conn)
            batch = await self._position(conn, horizon)
        return batch

    async def _horizon(self, conn: asyncpg.Connection) -> Horizon:
        """The horizon of the append transactions, read in a statement of its own, before the
        batch's (the module docstring)."""
        row = await conn.fetchrow(QUERIES["horizon"])
        blocker = None if row["xid"] is None else Blocker.from_row(row)
        # Read it again next batch while something that does not append holds xmin back.
        self._precise = row["horizon"] > row["xmin"]
        return Horizon(upto=row["horizon"], blocker=blocker)

    async def _position(self, conn: asyncpg.Connection, horizon: Horizon | None) -> Batch:
        """Position the committed rows below the horizon: the append transactions' if given,
        else the xmin of the batch's own snapshot."""
        assert self._head is not None
        head, head_hash = self._head
        upto = None if horizon is None else horizon.upto
        blocker = None if horizon is None else horizon.blocker
        limit = self.batch_size
        while True:
            fetched = await conn.fetch(QUERIES["next_committed"], limit, self._lower, upto)
            used = fetched[0]["horizon"]
            if fetched[0]["event_id"] is None:
                self._lower = max(self._lower, used)
                waiting = fetched[0]["waiting"]
                return Batch(
                    count=0, full=False, waiting=waiting, blocker=blocker if waiting else None
                )
            full = len(fetched) >= limit
            rows = order_batch(fetched)
            if rows or not full:
                break
            # Every row read waits for an earlier version of its stream past the end of the
            # batch (older transactions appended later versions): read further, or the same
            # rows would fill every batch for ever.
            limit *= 2
        # The next lower bound: the horizon if every eligible row got a position, else the
        # oldest transaction with a row left behind (deferred, or past the batch's size). An
        # xmin may lie below the last lower bound (held back by what does not append), and
        # each bound holds, so the greater does.
        kept = {row["event_id"] for row in rows}
        deferred = [row["transaction_id"] for row in fetched if row["event_id"] not in kept]
        beyond = [fetched[-1]["transaction_id"]] if full else []
        lower = min(deferred + beyond, default=used)
        if rows:
            await self._write(conn, head, head_hash, rows)
        self._lower = max(self._lower, lower)
        return Batch(
            count=len(rows),
            full=full,
            waiting=bool(deferred),
            blocker=blocker if deferred else None,
        )

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


async def blocked_by(pool: asyncpg.Pool) -> Blocker | None:
    """The running append transaction that committed events without a position wait for."""
    row = await pool.fetchrow(QUERIES["blocked_by"])
    return None if row is None else Blocker.from_row(row)


async def sequencer_lag(db: asyncpg.Pool | asyncpg.Connection) -> tuple[float, int]:
    """Age in seconds of the oldest committed event without a position, and how many wait."""
    row = await db.fetchrow(QUERIES["sequencer_lag"])
    return float(row["lag"]), int(row["pending"])
