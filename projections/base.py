"""What a projection is.

A projection folds events into read-model tables. It declares the event types it handles, a
version (bump it when its tables or logic change, so it is rebuilt), and the tables it owns.
Its SQL names tables through `t` (logical name → physical name), so `helix projections rebuild`
can run the same code into fresh tables and swap them in while the live ones keep serving.

`apply` must be idempotent per event: inline projections run in the append transaction (the
event has no position yet) and the runner later meets the same event in position order; read
models record the stream version they reflect and ignore what they have already seen. The
runner asks `pending` which events of a batch are still to apply (one query, no writes), so
what was applied inline costs it nothing more; a rebuild hands `replay` whole stretches of the
log for fresh tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

import asyncpg

from helix.eventstore import RecordedEvent

Tables = Mapping[str, str]


class Projection(Protocol):
    name: ClassVar[str]
    version: ClassVar[int]
    event_types: ClassVar[frozenset[str]]
    tables: ClassVar[tuple[str, ...]]
    # Applied in the append transaction too, for read-your-writes through the API.
    inline: ClassVar[bool]

    async def apply(self, conn: asyncpg.Connection, event: RecordedEvent, t: Tables) -> None: ...

    async def pending(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> list[RecordedEvent]:
        """The events of a stretch of the log (in position order) not applied yet."""
        ...

    async def replay(
        self, conn: asyncpg.Connection, events: Sequence[RecordedEvent], t: Tables
    ) -> None:
        """Apply a stretch of the log, in position order, each event once, to tables that
        hold nothing after it (a rebuild's fresh tables)."""
        ...
