"""Delivery workers: claim due deliveries, POST them, record every attempt.

A claim is one autocommitted statement (`FOR UPDATE SKIP LOCKED`, then a lease in
`locked_until` and a fencing token in `locked_by`); the HTTP call happens after it, outside any
transaction, and its outcome is recorded only if the token still holds the delivery. A worker
that dies leaves a lease that runs out, and the delivery is claimed again (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import attrs

from helix import envelope
from helix.config import Settings
from helix.domain.webhook import DisabledReason
from helix.eventstore import EventStore
from helix.services.caller import Caller, system_caller
from helix.services.unit import Tx
from helix.supervisor import Supervisor
from helix.webhooks.endpoints import Endpoints
from helix.webhooks.retry import next_delay
from helix.webhooks.sender import Outcome, Sender, encode, headers_for
from helix.webhooks.sql import QUERIES

log = logging.getLogger(__name__)


def _system() -> Caller:
    """Who disables a failing endpoint: Helix itself, one request per delivery outcome."""
    return attrs.evolve(system_caller("webhooks"), source="helix webhooks")


def payload_of(store: EventStore, claim: asyncpg.Record) -> dict[str, Any]:
    """The JSON body of a delivery: the event's webhook envelope, its data upcast to the
    current schema (so a subscriber only ever handles the current form)."""
    if claim["payload"] is not None:
        return dict(claim["payload"])
    event = dict(claim)
    name = event["type"]
    if name in store.registry.types():
        event["data"] = store.registry.upcast(name, event["schema_version"], event["data"])
        event["schema_version"] = store.registry.version_of(name)
    return envelope.webhook(event)


def secrets_in_use(claim: asyncpg.Record, now: datetime) -> list[str]:
    found = [claim["secret"]]
    until = claim["previous_secret_until"]
    if claim["previous_secret"] and until is not None and until > now:
        found.append(claim["previous_secret"])
    return found


class DeliveryWorker:
    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        *,
        name: str = "worker",
        endpoints: Endpoints | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor or Supervisor()
        self.settings = settings
        self.name = name
        self.endpoints = endpoints or Endpoints(store, settings)
        self.sender = Sender(settings)
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], uuid.UUID] = {}  # task → its claim token
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for due deliveries now (the dispatcher in this process calls it)."""
        self._wake.set()

    async def start(self) -> None:
        await self.sender.start()
        self._stopping = False
        self._task = self.supervisor.start(f"webhook-delivery-{self.name}", self.run)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await self.supervisor.stop([self._task])
        self._task = None
        tokens = list(set(self._inflight.values()))
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        if tokens:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self.store.pool.execute(QUERIES["release"], tokens)
        await self.sender.stop()

    async def claim(self, limit: int) -> tuple[uuid.UUID, list[asyncpg.Record]]:
        token = uuid.uuid4()
        rows = await self.store.pool.fetch(
            QUERIES["claim"], limit, self.settings.webhook_lease, token
        )
        return token, list(rows)

    async def run(self) -> None:
        """Claim and deliver until stopped; an error ends the loop (deliveries in flight go on),
        for the supervisor to restart."""
        while not self._stopping:
            free = self.settings.webhook_concurrency - len(self._inflight)
            claimed = 0
            if free > 0:
                token, rows = await self.claim(free)
                claimed = len(rows)
                for row in rows:
                    task = asyncio.create_task(self._deliver(token, row))
                    self._inflight[task] = token
                    task.add_done_callback(self._done)
            if claimed and claimed == free:
                await asyncio.sleep(0)  # a full batch: more may be due at once
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wake-up does, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _deliver(self, token: uuid.UUID, claim: asyncpg.Record) -> None:
        started = datetime.now(UTC)
        try:
            body = encode(payload_of(self.store, claim))
            headers = headers_for(str(claim["event_id"]), body, secrets_in_use(claim, started))
        except Exception as exc:  # e.g. an event no upcaster can lift: an attempt that failed
            log.exception("webhook delivery %s cannot be built", claim["delivery_id"])
            error = f"{type(exc).__name__}: {exc}"[:2000]
            outcome = Outcome(status=None, duration_ms=0.0, error_class="internal_error",
                              error=error)  # fmt: skip
        else:
            outcome = await self.sender.post(claim["url"], body, headers)
        try:
            await self.record(token, claim, started, outcome)
        except (asyncpg.PostgresError, OSError):
            # The lease runs out and the delivery is tried again (at least once).
            log.exception("webhook delivery %s: outcome not recorded", claim["delivery_id"])

    async def record(
        self, token: uuid.UUID, claim: asyncpg.Record, started: datetime, outcome: Outcome
    ) -> None:
        schedule = self.settings.webhook_retry_schedule
        made = claim["attempts"] + 1
        delay = None
        if outcome.ok:
            status = "succeeded"
        else:
            delay = next_delay(
                schedule, made, status=outcome.status, retry_after=outcome.retry_after
            )
            status = "dead" if delay is None else "pending"
        endpoint_id = claim["endpoint_id"]

        async def work(tx: Tx) -> None:
            conn = tx.conn
            finished = await conn.fetchrow(
                QUERIES["finish"], claim["delivery_id"], token, status, delay, outcome.status,
                outcome.error,
            )  # fmt: skip
            if finished is None:
                log.warning(
                    "webhook delivery %s: lease lost, outcome dropped", claim["delivery_id"]
                )
                return
            await conn.execute(
                QUERIES["attempt_insert"], claim["delivery_id"], finished["attempts"],
                endpoint_id, started, outcome.duration_ms, outcome.status, outcome.error_class,
                outcome.error, outcome.body, outcome.truncated, finished["next_attempt_at"],
            )  # fmt: skip
            if outcome.ok:
                await conn.execute(QUERIES["endpoint_succeeded"], endpoint_id)
                return
            expired = await conn.fetchval(
                QUERIES["endpoint_failed"], endpoint_id, started,
                self.settings.webhook_disable_after,
            )  # fmt: skip
            if outcome.status == 410:
                reason, detail = DisabledReason.GONE, "the endpoint answered 410 Gone"
            elif expired:
                reason = DisabledReason.FAILING
                detail = f"no successful delivery for {self.settings.webhook_disable_after:g} s"
            else:
                return
            # The disabling event names the delivered event whose answer caused it.
            await self.endpoints.disable(
                tx, endpoint_id, reason, detail, causation_id=claim["event_id"]
            )

        await self.endpoints.writer.run(_system(), work)
