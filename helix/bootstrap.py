"""The composition root: wires pool, store, sequencer, the services and the roles with plain
arguments. `LogNode` is one process's log (pool, store with its event registry and upcasters,
head watcher, sequencer); `Components` every long-lived object of the service over it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
import attrs

from helix.auth.accounts import Accounts
from helix.auth.sealing import Sealer, new_key
from helix.auth.tokens import TokenVerifier
from helix.config import Settings
from helix.database import QueryLogger, connect, create_pool
from helix.eventstore import ChannelWatcher, EventStore, HeadWatcher, Sequencer, WakeUps
from helix.serialization import EventRegistry, default_registry
from helix.services import Services, Writer
from helix.supervisor import Supervisor
from helix.webhooks.endpoints import Endpoints
from projections.jobs import CLAIM_CHANNEL

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
        query_logger: QueryLogger | None = None,
    ) -> None:
        self.url = url
        self.query_logger = query_logger
        self.settings = settings
        self.run_sequencer = sequencer
        self.registry = registry or default_registry()
        self.application_name = application_name
        self.pool: asyncpg.Pool | None = None
        self.sequencer: Sequencer | None = None
        # The process's background role loops (the sequencer's, and those `helix serve` adds).
        self.supervisor = Supervisor(
            settle=settings.role_settle_seconds, failing_after=settings.ready_role_failing_after
        )
        self._store: EventStore | None = None
        self._wakeups: WakeUps | None = None
        self._head: HeadWatcher | None = None

    def connector(self, role: str) -> Callable[[], Awaitable[asyncpg.Connection]]:
        async def open_connection() -> asyncpg.Connection:
            return await connect(
                self.url,
                self.settings,
                application_name=f"{self.application_name}-{role}",
                query_logger=self.query_logger,
            )

        return open_connection

    @property
    def store(self) -> EventStore:
        assert self._store is not None, "LogNode.start() first"
        return self._store

    async def start(self) -> None:
        self.pool = await create_pool(
            self.url,
            self.settings,
            application_name=self.application_name,
            query_logger=self.query_logger,
        )
        self._wakeups = WakeUps(
            self.pool, self.settings.wakeup_interval, supervisor=self.supervisor
        )
        self._head = HeadWatcher(
            self.connector("listen"),
            self.pool,
            self.settings.sequencer_poll_interval,
            supervisor=self.supervisor,
        )
        self._store = EventStore(self.pool, self.registry, self._wakeups, self._head)
        await self._wakeups.start()
        await self._head.start()
        if self.run_sequencer:
            self.sequencer = Sequencer(
                self.connector("sequencer"),
                batch_size=self.settings.sequencer_batch_size,
                poll_interval=self.settings.sequencer_poll_interval,
                supervisor=self.supervisor,
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


JWT_SECRET_NAME = "jwt_signing_secret"
SECRETS_KEY_NAME = "phase_secrets_key"


@attrs.frozen(kw_only=True)
class Components:
    """Every long-lived object of one process's service, built once over a started LogNode and
    handed to the API and the CLI as plain arguments: the accounts, the token verifier, the
    phase secrets sealer, the command and query services (one Writer for all of them), the
    webhook endpoint registry, and the LISTEN connection that wakes long-polling claims.
    `start` builds them; `stop` closes what they hold open."""

    node: LogNode
    settings: Settings
    writer: Writer
    accounts: Accounts
    verifier: TokenVerifier
    sealer: Sealer
    claims: ChannelWatcher
    services: Services
    endpoints: Endpoints

    @classmethod
    async def start(cls, node: LogNode, settings: Settings) -> Components:
        store = node.store
        writer = Writer(store)
        accounts = Accounts(store, writer=writer, password_min_length=settings.password_min_length)
        # Without HELIX_JWT_SECRET / HELIX_SECRETS_KEY, one kept in the database for every node
        # (the phase secrets key in the form HELIX_SECRETS_KEY takes, so it can move out later).
        jwt_secret = settings.jwt_secret or await accounts.get_or_create_secret(JWT_SECRET_NAME)
        keys = settings.secrets_keys or (
            await accounts.get_or_create_secret(SECRETS_KEY_NAME, new_key),
        )
        sealer = Sealer.from_text(keys)
        claims = ChannelWatcher(node.connector("claims"), CLAIM_CHANNEL, supervisor=node.supervisor)
        await claims.start()
        return cls(
            node=node,
            settings=settings,
            writer=writer,
            accounts=accounts,
            verifier=TokenVerifier(jwt_secret, settings),
            sealer=sealer,
            claims=claims,
            services=Services.build(store, settings, claims, sealer, writer=writer),
            endpoints=Endpoints(store, settings, writer=writer),
        )

    async def stop(self) -> None:
        await self.claims.stop()
