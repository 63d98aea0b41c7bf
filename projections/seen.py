"""The base of the projections that fold the project, job, webhook and worker streams.

Exactly once, in version order, whoever applies (the append transaction, the runner, a
rebuild), with no bookkeeping row written per event: the read-model rows themselves carry the
stream version they reflect (`version`), and each projection's `applied` block reads, per
stream, the version of the last event it applied (0: none). An event at or below it is
skipped; an event further ahead first pulls the events of the projection's types in between
from the log, so a stream's events are applied in version order, once.

Who may apply the same event twice at once: never the append transaction and anyone else (its
events are not committed, so no one else sees them, and no later version of the stream can
commit before it). Only events that are already committed, met by the runner or pulled in to
fill a gap, can race; their appliers take a per-stream advisory lock (no row, no WAL) and read
the applied version again under it. The common inline apply takes no lock and costs one read
(`check`) beside its writes, or for a `guarded` projection (a row per stream, written only
from the version before) nothing but its one write.

A handler returns its writes (`Write`: SQL and arguments) instead of running them, so a
rebuild can send a batch's writes in bulk (`replay`): the log arrives in position order, and
each stream's events are in version order in it, so a rebuild needs no checks at all.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, ClassVar

import asyncpg

from helix.eventstore import RecordedEvent
from helix.serialization import EventRegistry, default_registry
from helix.sql import load
from projections.base import Tables

SQL = load("projections", "seen.sql")
Write = tuple[str, tuple[Any, ...]]


@cache
def registry() -> EventRegistry:
    return default_registry()


def decode(event: RecordedEvent) -> Any:
    return registry().decode(event)


def to_json(value: Any) -> Any:
    return registry().to_json(value)


_formatted: dict[tuple[int, str, tuple[tuple[str, str], ...]], str] = {}


def sql(blocks: Mapping[str, str], name: str, t: Tables) -> str:
    """The named block with its `{table}` placeholders replaced by the physical tables."""
    key = (id(blocks), name, tuple(sorted(t.items())))
    found = _formatted.get(key)
    if found is None:
        found = _formatted[key] = blocks[name].format(**t)
    return found


def live_tables(tables: tuple[str, ...]) -> Tables:
    return {name: name for name in tables}


def stream_key(stream_id: str) -> uuid.UUID | None:
    """The aggregate id of `<type>-<uuid>`, which keys the stream's read-model rows."""
    try:
        return uuid.UUID(stream_id.partition("-")[2])
    except ValueError:
        return None


async def pending_by_version(
    conn: asyncpg.Connection,
    events: Sequence[RecordedEvent],
    event_types: frozenset[str],
    applied_sql: str,
) -> list[RecordedEvent]:
    """The events not yet applied, judged in one query by the versions `applied_sql` returns
    (`id`, `version` for each key in the uuid[] $1)."""
    keys = {e.stream_id: stream_key(e.stream_id) for e in events if e.type in event_types}
    wanted = sorted({k for k in keys.values() if k is not None})
    if not wanted:
        return []
    applied = {r["id"]: r["version"] or 0 for r in await conn.fetch(applied_sql, wanted)}
    return [
        e
        for e in events
        if e.type in event_types
        and (key := keys[e.stream_id]) is not None
        and e.version > applied.get(key, 0)
    ]


class StreamProjection:
    """Subclasses set the Projection attributes, `blocks` (their named SQL, with an `applied`
    block) and `primary` (the logical table that names the per-stream lock), and implement
    `writes`, what one decoded event changes."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    event_types: ClassVar[frozenset[str]]
    tables: ClassVar[tuple[str, ...]]
    inline: ClassVar[bool] = True
    blocks: ClassVar[Mapping[str, str]]
    primary: ClassVar[str]
    # Every event of the stream writes one row (the primary table's), and only from the version
    # before: an inline apply is then that one statement, looked at again only if it changed
    # nothing (a gap to fill first; `check`).
    guarded: ClassVar[bool] = False

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        raise NotImplementedError

    def _check_sql(self, t: Tables) -> str:
        key = (id(self.blocks), "check", tuple(sorted(t.items())))
        found = _formatted.get(key)
        if found is None:
            text = SQL["check"].replace("{applied}", self.blocks["applied"])
            found = _formatted[key] = text.format(**t)
        return found

    async def _check(
        self, conn: asyncpg.Connection, key: uuid.UUID, event: RecordedEvent, t: Tables
    ) -> tuple[int, list[RecordedEvent]]:
        """The version applied for the event's stream, and the events of this projection's
        types between it and the event."""
        rows = await conn.fetch(
            self._check_sql(t), [key], event.stream_id, event.version, sorted(self.event_types)
        )
        missed = [RecordedEvent.from_row(r) for r in rows if r["event_id"] is not None]
        return int(rows[0]["applied"]), missed

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent, t: Tables) -> None:
        if event.type not in self.event_types:
            return
        key = stream_key(event.stream_id)
        if key is None:
            return
        if self.guarded and event.position is None:
            # The append transaction's own event: no one else can apply it (see above).
            [(query, args)] = self.writes(event, decode(event), t)
            if not (await conn.execute(query, *args)).endswith(" 0"):
                return
        applied, missed = await self._check(conn, key, event, t)
        if applied >= event.version:
            return
        if missed or event.position is not None:
            # Committed events to apply: another applier may be at them too.
            await conn.execute(SQL["lock_stream"], t[self.primary], event.stream_id)
            applied, missed = await self._check(conn, key, event, t)
            if applied >= event.version:
                return
        for earlier in [*missed, event]:
            for query, args in self.writes(earlier, decode(earlier), t):
                await conn.execute(query, *args)

    async def pending(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> list[RecordedEvent]:
        return await pending_by_version(
            conn, events, self.event_types, sql(self.blocks, "applied", t)
        )

    async def replay(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> None:
        """Apply a stretch of the log, in position order, to tables that hold nothing after it
        (a rebuild's fresh tables): every write at once, a statement's rows sent together.

        A stream's k-th write of the stretch goes in wave k; waves run in order, and within a
        wave each statement's rows go in one pipelined `executemany`. A wave touches each
        stream at most once, and every write touches only its own stream's rows, so its order
        within the wave does not matter."""
        waves: list[dict[str, list[tuple[Any, ...]]]] = []
        count: dict[str, int] = defaultdict(int)
        for event in events:
            if event.type not in self.event_types:
                continue
            for query, args in self.writes(event, decode(event), t):
                k = count[event.stream_id]
                count[event.stream_id] = k + 1
                if k == len(waves):
                    waves.append({})
                waves[k].setdefault(query, []).append(args)
        for wave in waves:
            for query, rows in wave.items():
                await conn.executemany(query, rows)
