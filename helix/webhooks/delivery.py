"""Delivery workers: claim due deliveries, POST them, record every attempt.

A claim is one autocommitted statement (`FOR UPDATE SKIP LOCKED`, then a lease in
`locked_until` and a fencing token in `locked_by`) for a batch of due deliveries; the HTTP calls
happen after it, outside any transaction, and each outcome is recorded only if its token still
holds the delivery. A worker that dies leaves leases that run out, and the deliveries are
claimed again (at least once).

Outcomes are recorded in batches: while one batch's transaction runs, the outcomes that arrive
meanwhile wait and are written together next, with one statement for the deliveries and their
attempt rows and one per kind of endpoint health change. A delivery's slot is free only once its
outcome has committed, so a slow database slows claiming rather than piling up outcomes.
"""

from __future__ import annotations

import asyncio
import collections
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
from helix.tasks import cancel_and_wait
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


# Outcomes written in one transaction at most; more wait for the next.
RECORD_BATCH = 500
# Bodies of the latest events delivered, kept for their other endpoints.
BODY_CACHE = 1024
# How long a stopping worker waits for outcomes being recorded to commit.
STOP_GRACE = 5.0


@attrs.frozen
class Attempt:
    """One finished attempt of a claimed delivery, and what it makes of the delivery."""

    token: uuid.UUID
    claim: asyncpg.Record
    started: datetime
    outcome: Outcome
    status: str  # succeeded, pending (tried again after `delay`) or dead
    delay: float | None


def _text(value: str | None) -> str | None:
    # A receiver may answer with NUL, which PostgreSQL's text cannot hold.
    return None if value is None else value.replace("\x00", "\ufffd")


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
        self._posting = 0  # deliveries whose HTTP call is under way: the slots taken
        # Claimed, waiting for a slot: at most one round of slots, so each starts within the
        # time of one HTTP call, well inside its lease.
        self._ready: collections.deque[tuple[uuid.UUID, asyncpg.Record]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._outcomes: list[tuple[Attempt, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._bodies: collections.OrderedDict[uuid.UUID, bytes] = collections.OrderedDict()
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
        if self._recorder is not None:
            # Outcomes already on their way to the database commit, rather than being retried.
            await asyncio.wait({self._recorder}, timeout=STOP_GRACE)
        tokens = list({*self._inflight.values(), *(token for token, _ in self._ready)})
        self._ready.clear()
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._posting = 0
        if self._recorder is not None:
            await cancel_and_wait([self._recorder])
        self._outcomes.clear()
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
        concurrency = self.settings.webhook_concurrency
        # Claims are batched: a claim takes up to a round of slots beyond those free, and with
        # deliveries under way it waits until a quarter of that room is there, so a busy worker
        # claims many at once, not one per answer.
        least = max(1, concurrency // 4)
        while not self._stopping:
            self._start_ready()
            # Its outcome waits to be recorded with others while the next claim is made,
            # unless too many outcomes wait already.
            room = 2 * concurrency - self._posting - len(self._ready)
            if len(self._outcomes) >= RECORD_BATCH:
                room = 0
            claimed = 0
            if room >= least or (room > 0 and not self._posting):
                token, rows = await self.claim(room)
                claimed = len(rows)
                self._ready.extend((token, row) for row in rows)
                self._start_ready()
            if claimed and claimed == room:
                await asyncio.sleep(0)  # a full batch: more may be due at once
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wake-up does, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _start_ready(self) -> None:
        while self._ready and self._posting < self.settings.webhook_concurrency:
            token, row = self._ready.popleft()
            self._posting += 1
            task = asyncio.create_task(self._deliver(token, row))
            self._inflight[task] = token
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _deliver(self, token: uuid.UUID, claim: asyncpg.Record) -> None:
        try:
            started, outcome = await self._attempt(claim)
        finally:
            self._posting -= 1
            if not self._stopping:
                self._start_ready()
            self._wake.set()
        try:
            await self.record(self.attempt(token, claim, started, outcome))
        except (asyncpg.PostgresError, OSError):
            # The lease runs out and the delivery is tried again (at least once).
            log.exception("webhook delivery %s: outcome not recorded", claim["delivery_id"])

    async def _attempt(self, claim: asyncpg.Record) -> tuple[datetime, Outcome]:
        """When the attempt started, and how the HTTP call went."""
        started = datetime.now(UTC)
        try:
            body = self._body(claim)
            # Signed once for the attempt: the body and its signatures go out as they are.
            headers = headers_for(str(claim["event_id"]), body, secrets_in_use(claim, started))
        except Exception as exc:  # e.g. an event no upcaster can lift: an attempt that failed
            log.exception("webhook delivery %s cannot be built", claim["delivery_id"])
            error = f"{type(exc).__name__}: {exc}"[:2000]
            outcome = Outcome(status=None, duration_ms=0.0, error_class="internal_error",
                              error=error)  # fmt: skip
        else:
            outcome = await self.sender.post(claim["url"], body, headers)
        return started, outcome

    def _body(self, claim: asyncpg.Record) -> bytes:
        """The delivery's JSON body. An event's is made once for all the endpoints it goes to:
        stored events never change, so neither does their body."""
        if claim["payload"] is not None:
            return encode(payload_of(self.store, claim))
        event_id = claim["event_id"]
        body = self._bodies.get(event_id)
        if body is None:
            body = self._bodies[event_id] = encode(payload_of(self.store, claim))
            if len(self._bodies) > BODY_CACHE:
                self._bodies.popitem(last=False)
        return body

    def attempt(
        self, token: uuid.UUID, claim: asyncpg.Record, started: datetime, outcome: Outcome
    ) -> Attempt:
        if outcome.ok:
            return Attempt(token, claim, started, outcome, "succeeded", None)
        made = claim["attempts"] + 1
        delay = next_delay(
            self.settings.webhook_retry_schedule, made, status=outcome.status,
            retry_after=outcome.retry_after,
        )  # fmt: skip
        return Attempt(
            token, claim, started, outcome, "dead" if delay is None else "pending", delay
        )

    async def record(self, attempt: Attempt) -> None:
        """Until the attempt's outcome has committed, with whatever else finished meanwhile."""
        done = asyncio.get_running_loop().create_future()
        self._outcomes.append((attempt, done))
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record_batches())
        await done

    async def _record_batches(self) -> None:
        try:
            while self._outcomes:
                taken = self._outcomes[:RECORD_BATCH]
                del self._outcomes[:RECORD_BATCH]
                attempts = [attempt for attempt, _ in taken]
                try:
                    await self._write(attempts)
                except Exception as exc:  # every waiting delivery hears how its batch ended
                    if len(attempts) == 1:
                        _settle(taken, exc)
                        continue
                    # One bad outcome must not keep the others from committing: each alone.
                    log.warning("webhook outcomes not recorded as a batch (%s); one by one", exc)
                    for one in taken:
                        try:
                            await self._write([one[0]])
                        except Exception as alone:
                            _settle([one], alone)
                        else:
                            _settle([one], None)
                    continue
                _settle(taken, None)
        finally:
            self._recorder = None

    async def _write(self, attempts: list[Attempt]) -> None:
        """Record the attempts in one unit of work: deliveries and attempt rows (fenced by each
        claim's token), the endpoints' health, and the disabling of endpoints that are gone or
        have failed for too long."""
        columns = (
            [a.claim["delivery_id"] for a in attempts], [a.token for a in attempts],
            [a.status for a in attempts], [a.delay for a in attempts],
            [a.outcome.status for a in attempts], [_text(a.outcome.error) for a in attempts],
            [a.started for a in attempts], [a.outcome.duration_ms for a in attempts],
            [a.outcome.error_class for a in attempts],
            [_text(a.outcome.body) for a in attempts],
            [a.outcome.truncated for a in attempts],
        )  # fmt: skip

        async def work(tx: Tx) -> None:
            rows = await tx.conn.fetch(QUERIES["finish"], *columns)
            finished = {row["delivery_id"] for row in rows}
            for lost in (a for a in attempts if a.claim["delivery_id"] not in finished):
                log.warning(
                    "webhook delivery %s: lease lost, outcome dropped", lost.claim["delivery_id"]
                )
            await self._health(tx, [a for a in attempts if a.claim["delivery_id"] in finished])

        await self.endpoints.writer.run(_system(), work)

    async def _health(self, tx: Tx, attempts: list[Attempt]) -> None:
        # Per endpoint, as if its outcomes had been recorded one by one in order: a success
        # clears its failure clock, and the failures after its last success start it again.
        by_endpoint: dict[uuid.UUID, list[Attempt]] = {}
        for attempt in attempts:
            by_endpoint.setdefault(attempt.claim["endpoint_id"], []).append(attempt)
        succeeded, failing = [], {}
        for endpoint_id in sorted(by_endpoint):
            ordered = by_endpoint[endpoint_id]
            last_success = max((i for i, a in enumerate(ordered) if a.outcome.ok), default=None)
            if last_success is not None:
                succeeded.append(endpoint_id)
            after = ordered if last_success is None else ordered[last_success + 1 :]
            if after:
                failing[endpoint_id] = after
        if succeeded:
            await tx.conn.execute(QUERIES["endpoints_succeeded"], succeeded)
        if not failing:
            return
        expired = {
            row["endpoint_id"]: row["expired"]
            for row in await tx.conn.fetch(
                QUERIES["endpoints_failed"], list(failing),
                [min(a.started for a in failed) for failed in failing.values()],
                self.settings.webhook_disable_after,
            )
        }  # fmt: skip
        for endpoint_id, failed in failing.items():
            gone = next((a for a in failed if a.outcome.status == 410), None)
            if gone is not None:
                cause, reason = gone, DisabledReason.GONE
                detail = "the endpoint answered 410 Gone"
            elif expired.get(endpoint_id):
                cause, reason = failed[-1], DisabledReason.FAILING
                detail = f"no successful delivery for {self.settings.webhook_disable_after:g} s"
            else:
                continue
            # The disabling event names the delivered event whose answer caused it.
            await self.endpoints.disable(
                tx, endpoint_id, reason, detail, causation_id=cause.claim["event_id"]
            )


def _settle(taken: list[tuple[Attempt, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in taken:
        if done.done():
            continue  # its delivery was cancelled (the worker is stopping)
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
