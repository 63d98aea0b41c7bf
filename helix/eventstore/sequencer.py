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
and final because they are handed out only here, to committed rows, under the row lock on
`sequencer_state`, and a reader only sees them once the batch commits.

One more rule keeps each stream in version order. Transaction ids are taken at a transaction's
first write, not at its append: T2 may write something (taking id 100), then wait on the stream
row that T1 (id 101) holds, and append version 2 after T1 commits version 1. Ordered by id,
version 2 would come first, and if a third transaction with id 100.5 still runs, version 2
would even be eligible while version 1 is not. So a row is positioned only when every earlier
version of its stream already has a position or is positioned before it in the same batch; the
rest wait for a later batch. Within a batch each stream's rows take that stream's slots in
version order.

Leadership is a session-level advisory lock on a dedicated connection (a transaction-scoped lock
would keep a transaction open and hold back the xmin horizon for everyone). The batches run on
that same connection, so when it dies mid-batch the batch rolls back with the leadership. The
FOR UPDATE on `sequencer_state` makes even two overlapping leaders safe: they serialize, and the
second re-reads the head and the rows after the first commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from helix.eventstore.chain import link
from helix.eventstore.sql import QUERIES
from helix.eventstore.wakeups import APPENDED

log = logging.getLogger(__name__)

LEADER_LOCK = 0x48454C4958_0001  # "HELIX" · 1
DISCONNECTS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ConnectionError)


class Sequencer:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        standby_interval: float = 0.5,
        name: str | None = None,
    ) -> None:
        self._connect = connect
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.is_leader = False
        self.batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="helix-sequencer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await self._lead(conn)
            except DISCONNECTS as exc:
                log.warning("sequencer %s lost its connection: %s", self.name, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.is_leader = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while not await conn.fetchval(QUERIES["try_lead"], LEADER_LOCK):  # noqa: ASYNC110
            await asyncio.sleep(self.standby_interval)
        self.is_leader = True
        log.info("sequencer %s is the leader", self.name)
        await conn.add_listener(APPENDED, lambda *_: self._wake.set())
        idle_delay = 0.001
        while True:
            self._wake.clear()
            count = await self.sequence_batch(conn)
            if count >= self.batch_size:
                continue
            if count == 0 and await conn.fetchval(QUERIES["has_unsequenced"]):
                # Committed rows wait behind a transaction still running; it may be one that
                # sends no wake-up, so look again soon, backing off while it lasts.
                await asyncio.sleep(idle_delay)
                idle_delay = min(idle_delay * 2, 0.05)
                continue
            idle_delay = 0.001
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and stop() would then wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def sequence_batch(self, conn: asyncpg.Connection) -> int:
        """Position one batch of committed events; returns how many."""
        async with conn.transaction():
            head, head_hash = await conn.fetchrow(QUERIES["lock_head"])
            rows = order_batch(await conn.fetch(QUERIES["next_committed"], self.batch_size))
            if not rows:
                return 0
            ids, positions, hashes = [], [], []
            streams: dict[str, Mapping[str, Any]] = {}
            for offset, row in enumerate(rows, start=1):
                position = head + offset
                head_hash = link(head_hash, position, row)
                ids.append(row["event_id"])
                positions.append(position)
                hashes.append(head_hash)
                streams[row["stream_id"]] = row  # the last is the highest version
            await conn.execute(
                QUERIES["write_batch"],
                ids,
                positions,
                hashes,
                list(streams),
                [r["stream_type"] for r in streams.values()],
                [r["project_id"] for r in streams.values()],
                [r["version"] for r in streams.values()],
                positions[-1],
                head_hash,
                self.name,
            )
        self.batches += 1
        return len(rows)


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


async def sequencer_lag(pool: asyncpg.Pool) -> tuple[float, int]:
    """Age in seconds of the oldest committed event without a position, and how many wait."""
    row = await pool.fetchrow(QUERIES["sequencer_lag"])
    return float(row["lag"]), int(row["pending"])
