"""Appending to and reading from the event log."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from helix.errors import ConcurrencyError, ValidationError
from helix.eventstore.records import (
    ANY_VERSION,
    Appended,
    EncodedEvent,
    RecordedEvent,
    stream_type_of,
)
from helix.eventstore.sql import PUBLIC_QUERIES, QUERIES
from helix.eventstore.wakeups import HeadWatcher, WakeUps
from helix.globs import like_patterns

if TYPE_CHECKING:
    from helix.serialization import EventRegistry


# Stretches of positions a filtered read of the log reads at once (read_windows).
MIN_WINDOW = 4096
MAX_WINDOW = 65536


def _arrays(
    stream_id: str,
    stream_type: str,
    project_id: uuid.UUID | None,
    encoded: Sequence[EncodedEvent],
    metadata: dict[str, Any],
) -> tuple[Any, ...]:
    """The parameters of the many-event appends, up to the expected version."""
    return (
        stream_id,
        stream_type,
        project_id,
        [e.event_id for e in encoded],
        [e.type for e in encoded],
        [e.schema_version for e in encoded],
        [e.data for e in encoded],
        metadata,
    )


async def read_windows(
    pool: asyncpg.Pool | asyncpg.Connection,
    query: str,
    after: int,
    up_to: int,
    limit: int,
    *args: Any,
) -> list[asyncpg.Record]:
    """At most `limit` rows of `query` in the positions (after, up_to], read a stretch of
    positions at a time. `query` takes (after, limit, end of the stretch, *args).

    For filters no index leads to (types, actors, times): positions are dense, so a stretch of
    N positions is at most N index entries however rare the matches, where one query over the
    whole range may scan the whole log. Stretches double while they come back short, so a
    rare match takes a few round trips rather than one per stretch."""
    found: list[asyncpg.Record] = []
    window = max(limit, MIN_WINDOW)
    while after < up_to and len(found) < limit:
        end = min(after + window, up_to)
        found += await pool.fetch(query, after, limit - len(found), end, *args)
        after = end
        window = min(window * 2, MAX_WINDOW)
    return found


class Lane:
    """Pool connections that back-to-back standalone appends hand to each other directly.

    The pool's own acquire and release cost about as much client CPU as the append itself
    (a task and several event-loop callbacks each time). A connection given back here is taken
    by the next append that comes along in the same turn of the event loop; one still unused
    when the loop comes round again goes back to the pool, so the lane never keeps a connection
    from other work and holds none once appends stop.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._idle: list[asyncpg.Connection] = []
        self._trimming = False
        self._releasing: set[asyncio.Task[None]] = set()

    async def take(self) -> asyncpg.Connection:
        if self._idle:
            return self._idle.pop()
        conn: asyncpg.Connection = await self._pool.acquire()
        return conn

    def give(self, conn: asyncpg.Connection) -> None:
        """Give back a connection that is idle (no transaction open, no query running)."""
        self._idle.append(conn)
        if not self._trimming:
            self._trimming = True
            asyncio.get_running_loop().call_soon(self._trim)

    async def drop(self, conn: asyncpg.Connection) -> None:
        """Give back a connection in an unknown state: the pool resets or replaces it."""
        await self._pool.release(conn)

    def _trim(self) -> None:
        self._trimming = False
        idle, self._idle = self._idle, []
        for conn in idle:
            task = asyncio.create_task(self._put_back(conn))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _put_back(self, conn: asyncpg.Connection) -> None:
        # A pool terminated meanwhile has closed the connection already.
        with contextlib.suppress(asyncpg.InterfaceError):
            await self._pool.release(conn)


class EventStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: EventRegistry,
        wakeups: WakeUps | None = None,
        head: HeadWatcher | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.wakeups = wakeups
        self.head_watcher = head
        if wakeups is not None and wakeups.head is None:
            wakeups.head = head
        self._lane = Lane(pool)
        self._notifying: set[asyncio.Task[None]] = set()

    async def begin_appending(self, conn: asyncpg.Connection) -> None:
        """Take the append lock in `conn`'s transaction, as its first statement when it may
        append after writing something else: the sequencer's horizon waits only for the
        holders of this lock (sequencer.py), so an append in a transaction that got its id
        without it is refused. A transaction whose first write is an append needs nothing."""
        await conn.execute(QUERIES["begin_appending"])

    def committed(self, channels: Sequence[str] = ()) -> None:
        """Call after a transaction that appended commits (appends never NOTIFY themselves);
        `channels` are further listeners to wake with the coalesced wake-up."""
        if self.wakeups is not None:
            self.wakeups.signal(channels)
        elif channels:
            # No wake-up loop in this process (a command-line tool): notify once, after commit.
            task = asyncio.get_running_loop().create_task(self._notify(channels))
            self._notifying.add(task)
            task.add_done_callback(self._notifying.discard)

    async def _notify(self, channels: Sequence[str]) -> None:
        with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            await self.pool.execute(QUERIES["wake_sequencer"], list(channels))

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[object],
        *,
        metadata: Mapping[str, Any] | None = None,
        project_id: uuid.UUID | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> Appended:
        """Append `events` atomically if the stream is at `expected_version` (0: a new stream;
        ANY_VERSION: wherever it is). With `conn`, the caller's transaction owns the commit and
        the caller calls `committed()` afterwards (a ConcurrencyError there has aborted that
        transaction: retry the whole unit of work); without it the append commits on its own.
        """
        if not events:
            raise ValidationError("an append needs at least one event")
        if expected_version < ANY_VERSION:
            raise ValidationError("expected_version must be 0, positive, or ANY_VERSION")
        encoded = [self.registry.encode(e) for e in events]
        ids = tuple(e.event_id for e in encoded)
        stream_type = stream_type_of(stream_id)
        meta = dict(metadata) if metadata else {}
        if expected_version == ANY_VERSION:
            args = _arrays(stream_id, stream_type, project_id, encoded, meta)
            # Writers that do not check versions queue on a per-stream lock held to their
            # commit, so they never race each other for the next version.
            if conn is not None:
                await conn.execute(QUERIES["lock_stream"], stream_id)
                return await self._insert(conn, QUERIES["append_any"], args, ids, expected_version)
            async with self.pool.acquire() as own, own.transaction():
                await own.execute(QUERIES["lock_stream"], stream_id)
                appended = await self._insert(
                    own, QUERIES["append_any"], args, ids, expected_version
                )
            self.committed()
            return appended
        if len(encoded) == 1:
            [one] = encoded
            query = QUERIES["append_one"]
            args = (
                stream_id,
                stream_type,
                project_id,
                one.event_id,
                one.type,
                one.schema_version,
                one.data,
                meta,
                expected_version,
            )
        else:
            query = QUERIES["append"]
            args = (*_arrays(stream_id, stream_type, project_id, encoded, meta), expected_version)
        if conn is not None:
            return await self._insert(conn, query, args, ids, expected_version)
        # One statement in its own implicit transaction, on a connection from the lane.
        own = await self._lane.take()
        try:
            appended = await self._insert(own, query, args, ids, expected_version)
        except BaseException:
            await self._lane.drop(own)
            raise
        self._lane.give(own)
        self.committed()
        return appended

    async def _insert(
        self,
        conn: asyncpg.Connection,
        query: str,
        args: tuple[Any, ...],
        ids: tuple[uuid.UUID, ...],
        expected: int,
    ) -> Appended:
        stream_id = args[0]
        try:
            if len(ids) == 1:
                row = await conn.fetchrow(query, *args)
            else:
                rows = await conn.fetch(query, *args)
                row = rows[0] if rows else None
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "events_stream_version_key":
                raise  # a duplicate event id is an error, never ignored
            # In a caller's transaction the error has aborted it: read on another connection.
            reader = None if conn.is_in_transaction() else conn
            raise ConcurrencyError(
                stream_id, expected, await self.stream_version(stream_id, reader)
            ) from None
        if row is None:
            raise ConcurrencyError(stream_id, expected, await self.stream_version(stream_id, conn))
        first = row["version"]
        return Appended(
            stream_id=stream_id,
            event_ids=ids,
            first_version=first,
            last_version=first + len(ids) - 1,
            recorded_at=row["recorded_at"],
        )

    async def stream_version(self, stream_id: str, conn: asyncpg.Connection | None = None) -> int:
        """The stream's current version (committed events), 0 if it has none."""
        if conn is not None:
            return int(await conn.fetchval(QUERIES["stream_version"], stream_id))
        return int(await self.pool.fetchval(QUERIES["stream_version"], stream_id))

    async def read_stream(
        self, stream_id: str, after_version: int = 0, *, conn: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        """Every committed event of one stream, sequenced or not, in version order."""
        if conn is not None:
            rows = await conn.fetch(QUERIES["read_stream"], stream_id, after_version)
        else:
            rows = await self.pool.fetch(QUERIES["read_stream"], stream_id, after_version)
        return [RecordedEvent.from_row(r) for r in rows]

    async def read_all(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        stream_id: str | None = None,
        project_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
        on: asyncpg.Connection | None = None,
        head: int | None = None,
    ) -> list[RecordedEvent]:
        """Sequenced events after a position, in position order, optionally filtered; `on` a
        connection the caller holds (one that holds a connection must not wait for a second
        from the same pool), else on the pool; `head` the head the caller read already.

        Fewer than `limit` events means every matching event up to the head (as it was when
        the call began, or later) is in the result."""
        rows = await self._read_rows(
            QUERIES, after_position, limit, stream_id, project_id, types, on, head
        )
        return [RecordedEvent.from_row(r) for r in rows]

    async def read_public(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        stream_id: str | None = None,
        project_id: uuid.UUID | None = None,
        types: Sequence[str] | None = None,
    ) -> list[asyncpg.Record]:
        """`read_all`'s events as the streams send them: rows of `position`, `stream_id`,
        `project_id`, `type` and `json`, the event's public envelope as PostgreSQL renders it
        (`helix.envelope.PUBLIC_SQL`), never decoded here."""
        return await self._read_rows(
            PUBLIC_QUERIES, after_position, limit, stream_id, project_id, types, None
        )

    async def _read_rows(
        self,
        queries: dict[str, str],
        after_position: int,
        limit: int,
        stream_id: str | None,
        project_id: uuid.UUID | None,
        types: Sequence[str] | None,
        on: asyncpg.Connection | None,
        head: int | None = None,
    ) -> list[asyncpg.Record]:
        db = self.pool if on is None else on
        patterns = like_patterns(types)
        rows: list[asyncpg.Record]
        if stream_id is not None:
            rows = await db.fetch(
                queries["read_all_stream"], after_position, limit, stream_id, patterns, project_id
            )
        elif project_id is not None:
            rows = await db.fetch(
                queries["read_all_project"], after_position, limit, project_id, patterns
            )
        elif patterns is not None:
            if head is None:
                head = await self.head(on)
            rows = await read_windows(
                db, queries["read_window"], after_position, head, limit, patterns
            )
        else:
            rows = await db.fetch(queries["read_all"], after_position, limit)
        return rows

    async def head(self, on: asyncpg.Connection | None = None) -> int:
        value = await (self.pool if on is None else on).fetchval(QUERIES["head"])
        return int(value)

    async def wait_for_position(self, position: int, timeout: float | None = None) -> bool:
        """Wait until the log's head is at or past `position`; False if the timeout ran out."""
        if self.head_watcher is None:
            raise RuntimeError("this store has no head watcher")
        return await self.head_watcher.wait_for(position, timeout)

    def decode(self, recorded: RecordedEvent) -> Any:
        return self.registry.decode(recorded)
