"""The composition root: wires pool, store, sequencer and the roles with plain arguments."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from helix.config import Settings
from helix.database import connect, create_pool
from helix.eventstore import EventStore, HeadWatcher, Sequencer, WakeUps
from helix.serialization import EventRegistry, default_registry

log = logging.getLogger(__name__)


class LogNode:
    """One process's view of the log: a pool, the store, a head watcher, and optionally the
    sequencer. Start it, use `store`, stop it."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        sequencer: bool = True,
        registry: EventRegistry | None = None,
        application_name: str = "helix",
    ) -> None:
        self.url = url
        self.settings = settings
        self.run_sequencer = sequencer
        self.registry = registry or default_registry()
        self.application_name = application_name
        self.pool: asyncpg.Pool | None = None
        self.sequencer: Sequencer | None = None
        self._store: EventStore | None = None
        self._wakeups: WakeUps | None = None
        self._head: HeadWatcher | None = None

    def connector(self, role: str) -> Callable[[], Awaitable[asyncpg.Connection]]:
        async def open_connection() -> asyncpg.Connection:
            return await connect(
                self.url, self.settings, application_name=f"{self.application_name}-{role}"
            )

        return open_connection

    @property
    def store(self) -> EventStore:
        assert self._store is not None, "LogNode.start() first"
        return self._store

    async def start(self) -> None:
        self.pool = await create_pool(
            self.url, self.settings, application_name=self.application_name
        )
        self._wakeups = WakeUps(self.pool, self.settings.wakeup_interval)
        self._head = HeadWatcher(
            self.connector("listen"), self.pool, self.settings.sequencer_poll_interval
        )
        self._store = EventStore(self.pool, self.registry, self._wakeups, self._head)
        await self._wakeups.start()
        await self._head.start()
        if self.run_sequencer:
            self.sequencer = Sequencer(
                self.connector("sequencer"),
                batch_size=self.settings.sequencer_batch_size,
                poll_interval=self.settings.sequencer_poll_interval,
            )
            self._wakeups.local.append(self.sequencer.wake)
            await self.sequencer.start()

    async def stop(self) -> None:
        if self.sequencer is not None:
            await self.sequencer.stop()
        if self._head is not None:
            await self._head.stop()
        if self._wakeups is not None:
            await self._wakeups.stop()
        if self.pool is not None:
            try:
                # Graceful close waits for every borrowed connection; a borrower that never
                # gives one back must not hang shutdown.
                await asyncio.wait_for(self.pool.close(), timeout=10)
            except TimeoutError:
                log.warning("connections still borrowed after 10 s; terminating the pool")
                self.pool.terminate()
            self.pool = None
