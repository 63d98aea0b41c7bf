"""The dispatcher: follows the log from its own checkpoint and turns each event into one
delivery per matching endpoint.

The deliveries and the advanced checkpoint commit in one transaction, with the checkpoint row
locked FOR UPDATE, so however many dispatchers run (one per node is fine) each batch is
dispatched once; the unique (endpoint, event) index of log deliveries backs that up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from helix.config import Settings
from helix.eventstore import EventStore
from helix.supervisor import Supervisor
from helix.webhooks.sql import QUERIES

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        *,
        on_dispatched: Callable[[], None] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.settings = settings
        self.on_dispatched = on_dispatched
        self.position = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def dispatch_once(self) -> int:
        """Dispatch the next batch of events; the number of deliveries written."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            checkpoint: int = await conn.fetchval(QUERIES["lock_checkpoint"])
            row = await conn.fetchrow(
                QUERIES["dispatch"], checkpoint, self.settings.webhook_batch_size
            )
            last = row["last_position"]
            if last is not None:
                await conn.execute(QUERIES["save_checkpoint"], last)
        self.position = checkpoint if last is None else int(last)
        inserted = int(row["inserted"])
        if inserted and self.on_dispatched is not None:
            self.on_dispatched()
        return inserted

    async def run(self) -> None:
        """Dispatch until stopped; an error ends the loop, for the supervisor to restart."""
        # The flag as well as the cancel: on 3.11 a wait_for (inside wait_for_position) can
        # swallow a cancellation that arrives as its wait ends.
        while not self._stopping:
            before = self.position
            await self.dispatch_once()
            if self.position > before:
                continue  # maybe more behind it
            # Woken by the head watcher; its timeout is the slow poll.
            await self.store.wait_for_position(
                self.position + 1, timeout=self.settings.sequencer_poll_interval
            )

    async def start(self) -> None:
        self._stopping = False
        self._task = self.supervisor.start("webhook-dispatcher", self.run)

    async def stop(self) -> None:
        self._stopping = True
        await self.supervisor.stop([self._task])
        self._task = None
