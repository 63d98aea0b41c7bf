"""The base of the projections that fold the project and job streams.

Idempotence: each projection keeps, per stream, the last version it applied (its `<table>_seen`
table, swapped with the others on a rebuild). An event at or below it is skipped; an event
further ahead first pulls the events in between from the log, so a stream's events are always
applied in version order, once, whoever applies them (the append transaction, the runner, a
rebuild).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar

import asyncpg

from helix.eventstore import RecordedEvent
from helix.serialization import EventRegistry, default_registry
from helix.sql import load
from projections.base import Tables

SQL = load("projections", "seen.sql")


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


class StreamProjection:
    """Subclasses set the Projection attributes plus `seen` (the tracking table's logical name)
    and implement `handle`, which applies one decoded event exactly once."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    event_types: ClassVar[frozenset[str]]
    tables: ClassVar[tuple[str, ...]]
    inline: ClassVar[bool] = True
    seen: ClassVar[str]

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent, t: Tables) -> None:
        if event.type not in self.event_types:
            return
        seen = {"seen": t[self.seen]}
        applied: int = await conn.fetchval(sql(SQL, "lock_seen", seen), event.stream_id)
        if applied >= event.version:
            return
        if applied < event.version - 1:
            rows = await conn.fetch(
                SQL["missed_events"],
                event.stream_id,
                applied,
                event.version,
                sorted(self.event_types),
            )
            for row in rows:
                missed = RecordedEvent.from_row(row)
                await self.handle(conn, missed, decode(missed), t)
        await self.handle(conn, event, decode(event), t)
        await conn.execute(sql(SQL, "set_seen", seen), event.stream_id, event.version)

    async def handle(
        self, conn: asyncpg.Connection, event: RecordedEvent, decoded: Any, t: Tables
    ) -> None:
        raise NotImplementedError
