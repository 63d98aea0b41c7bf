"""The projection runner: follows the log and applies each projection in position order.

Each batch runs in one transaction that locks the projection's checkpoint row, applies the
events after it, and stores the new checkpoint, so a batch's effect happens exactly once even
with runners on several nodes. What the append transactions already applied inline is known from
the read models' own versions, read for the whole batch in one query (`pending`), and skipped
with no further statement and no write. Between batches the runner waits for the head to pass
its checkpoint (woken by the sequencer's NOTIFY, with a polling fallback), and after a small
batch it waits `min_interval` more: under load the sequencer advances many times a
second, and one batch per advance would cost each projection a checkpoint lock, a read and a
checkpoint write each time for an event or two that the append transactions applied inline
already. Every read model the REST API reads is applied inline, so only the checkpoint (and a
read model a non-inline projection keeps) lags by it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import attrs

from helix.eventstore import EventStore
from helix.eventstore.sql import QUERIES
from helix.sql import load
from helix.supervisor import Supervisor
from projections import registry
from projections.base import Projection
from projections.rebuild import rebuild

log = logging.getLogger(__name__)
SQL = load("projections", "runner.sql")


@attrs.frozen(kw_only=True)
class ProjectionStatus:
    name: str
    version: int  # the version of the projection's code
    stored_version: int | None  # the version its tables were built with (None: never run)
    position: int
    head: int
    updated_at: datetime | None

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)

    @property
    def stale(self) -> bool:
        """Its code changed since its tables were built: it needs a rebuild."""
        return self.stored_version is not None and self.stored_version != self.version


async def status(
    pool: asyncpg.Pool, projections: Sequence[Projection] = registry.ALL
) -> list[ProjectionStatus]:
    async with pool.acquire() as conn:
        head = int(await conn.fetchval(QUERIES["head"]))
        rows = {r["name"]: r for r in await conn.fetch(SQL["checkpoints"])}
    return [
        ProjectionStatus(
            name=p.name,
            version=p.version,
            stored_version=rows[p.name]["version"] if p.name in rows else None,
            position=rows[p.name]["position"] if p.name in rows else 0,
            head=head,
            updated_at=rows[p.name]["updated_at"] if p.name in rows else None,
        )
        for p in projections
    ]


@attrs.frozen
class Batch:
    read: int  # events read; fewer than the batch size means caught up
    position: int  # the checkpoint after the batch
    applied: int = 0  # events the batch applied (the rest were applied already, inline)


async def run_batch(store: EventStore, projection: Projection, batch_size: int = 500) -> Batch:
    """Apply the next batch of events after the projection's checkpoint, and move it.

    A projection whose tables were built by another version of its code is not advanced."""
    tables = registry.live(projection)
    types = sorted(projection.event_types)
    async with store.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL["lock_checkpoint"], projection.name, projection.version)
        if row["version"] != projection.version:
            return Batch(0, row["position"])
        checkpoint: int = row["position"]
        # Read the head first: with fewer than a full batch, every matching event up to it is
        # in the batch, so the checkpoint may move past the events of other types up to it.
        head = await store.head(conn)
        events = await store.read_all(checkpoint, batch_size, types=types, on=conn, head=head)
        pending = await projection.pending(conn, events, tables) if events else []
        for event in pending:
            await projection.apply(conn, event, tables)
        position = events[-1].position if events else checkpoint
        assert position is not None
        if len(events) < batch_size:
            position = max(position, head)
        if position != checkpoint:
            await conn.execute(
                SQL["save_checkpoint"], projection.name, projection.version, position
            )
    return Batch(len(events), position, len(pending))


async def catch_up(store: EventStore, projection: Projection, batch_size: int = 500) -> int:
    """Apply everything up to the head; returns the checkpoint reached."""
    while True:
        batch = await run_batch(store, projection, batch_size)
        if batch.read < batch_size:
            return batch.position


class ProjectionRunner:
    """Follows the log for each projection in a supervised task of its own (an error restarts
    it from its checkpoint). A projection whose stored version differs from its code's is
    rebuilt first."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection] = registry.ALL,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        min_interval: float = 0.25,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.projections = tuple(projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_interval = min_interval
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for projection in self.projections:
            task = self.supervisor.start(
                f"projection-{projection.name}", functools.partial(self._run, projection)
            )
            self._tasks.append(task)

    async def stop(self) -> None:
        await self.supervisor.stop(self._tasks)
        self._tasks.clear()

    async def _run(self, projection: Projection) -> None:
        current = {s.name: s for s in await status(self.store.pool, [projection])}
        if current[projection.name].stale:
            log.warning("projection %s changed version; rebuilding", projection.name)
            await rebuild(self.store, projection, batch_size=self.batch_size)
        while True:
            batch = await run_batch(self.store, projection, self.batch_size)
            if batch.read < self.batch_size:
                await self.store.wait_for_position(batch.position + 1, self.poll_interval)
                await asyncio.sleep(self.min_interval)
