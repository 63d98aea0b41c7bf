"""`helix bench webhooks`: signed deliveries per second to a local aiohttp receiver with 1 and
10 endpoints, beside plain signed POSTs to the same receiver at the same concurrency, and the
latency from an append's commit to the receiver getting the event (p50/p99)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable

import aiohttp
import attrs
from aiohttp import web

from helix.auth.accounts import Accounts
from helix.bench.common import percentile
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.user import Role
from helix.eventstore import EncodedEvent
from helix.services import system_caller
from helix.services.caller import Caller
from helix.webhooks import WebhookRoles
from helix.webhooks.endpoints import Endpoints
from helix.webhooks.sender import encode, headers_for
from helix.webhooks.signatures import new_secret

METADATA = {"actor": "bench", "source": "helix bench"}


def _caller(owner: uuid.UUID) -> Caller:
    """The benchmark acts as the owner of the endpoints it makes."""
    return Caller(user_id=str(owner), name="bench", actor="bench", source="helix bench")


BENCH_CALLER = attrs.evolve(system_caller("bench"), actor="bench", source="helix bench")
PAYLOAD = {"note": "x" * 96}
APPEND_BATCH = 100


class Receiver:
    """Counts requests and notes when each webhook-id first arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived: dict[str, float] = {}
        self.target = 0
        self.reached = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        self.arrived.setdefault(request.headers.get("webhook-id", ""), time.perf_counter())
        if self.count >= self.target:
            self.reached.set()
        return web.Response(text="ok")

    def expect(self, total: int) -> None:
        self.count, self.target = 0, total
        self.reached.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _append(node: LogNode, count: int) -> None:
    stream = f"bench-{uuid.uuid4().hex}"
    for start in range(0, count, APPEND_BATCH):
        events = [
            EncodedEvent(type="bench.appended", schema_version=1, data=PAYLOAD)
            for _ in range(min(APPEND_BATCH, count - start))
        ]
        await node.store.append(stream, start, events, metadata=METADATA)


async def helix_rate(
    node: LogNode, settings: Settings, receiver: Receiver, owner: uuid.UUID, endpoints: int,
    events: int,
) -> float:  # fmt: skip
    registry = Endpoints(node.store, settings)
    made = [
        (await registry.create(_caller(owner), url=f"http://127.0.0.1:{receiver.port}/e{n}",
                               event_types=["bench.*"]))[0]["endpoint_id"]
        for n in range(endpoints)
    ]  # fmt: skip
    receiver.expect(events * endpoints)
    roles = WebhookRoles(node.store, settings)
    await roles.start()
    try:
        started = time.perf_counter()
        await _append(node, events)
        await asyncio.wait_for(receiver.reached.wait(), 300)
        elapsed = time.perf_counter() - started
    finally:
        await roles.stop()
        for endpoint_id in made:
            await registry.delete(_caller(owner), endpoint_id)
    return events * endpoints / elapsed


async def raw_rate(receiver: Receiver, concurrency: int, total: int) -> float:
    """The same signed POSTs straight from one client session: the HTTP floor."""
    secret, body = new_secret(), encode({"data": PAYLOAD})
    receiver.expect(total)
    queue = list(range(total))
    url = f"http://127.0.0.1:{receiver.port}/raw"
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                queue.pop()
                headers = headers_for(str(uuid.uuid4()), body, [secret])
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


async def latency(
    node: LogNode, settings: Settings, receiver: Receiver, owner: uuid.UUID, samples: int
) -> list[float]:
    registry = Endpoints(node.store, settings)
    row, _ = await registry.create(
        _caller(owner), url=f"http://127.0.0.1:{receiver.port}/lat", event_types=["bench.*"]
    )
    roles = WebhookRoles(node.store, settings)
    await roles.start()
    stream = f"latency-{uuid.uuid4().hex}"
    found: list[float] = []
    try:
        for n in range(samples):
            event = EncodedEvent(type="bench.appended", schema_version=1, data=PAYLOAD)
            receiver.expect(1)
            appended = await node.store.append(stream, n, [event], metadata=METADATA)
            committed = time.perf_counter()
            await asyncio.wait_for(receiver.reached.wait(), 30)
            event_id = str(appended.event_ids[0])
            found.append(receiver.arrived[event_id] - committed)
            await asyncio.sleep(0.005)
    finally:
        await roles.stop()
        await registry.delete(_caller(owner), row["endpoint_id"])
    return found


async def run(url: str, settings: Settings, *, events: int, latency_samples: int) -> int:
    settings = attrs.evolve(
        settings,
        webhook_allowed_networks=("127.0.0.0/8",),
        webhook_poll_interval=0.05,
        sequencer_poll_interval=0.2,
    )
    receiver = Receiver()
    await receiver.start()
    node = LogNode(url, settings)
    await node.start()
    say: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    try:
        owner = (await Accounts(node.store).create_user(
            f"bench-{uuid.uuid4().hex[:8]}", Role.ADMIN, None, caller=BENCH_CALLER
        )).user_id  # fmt: skip
        say(f"{events} events, worker concurrency {settings.webhook_concurrency}")
        raw = await raw_rate(receiver, settings.webhook_concurrency, events)
        say(f"{'endpoints':>9}  {'raw POST/s':>10}  {'helix deliveries/s':>18}  {'ratio':>6}")
        for endpoints in (1, 10):
            ours = await helix_rate(node, settings, receiver, owner, endpoints, events)
            say(f"{endpoints:>9}  {raw:>10.0f}  {ours:>18.0f}  {ours / raw:>6.2f}")
        ms = [x * 1000 for x in await latency(node, settings, receiver, owner, latency_samples)]
        say(
            f"append commit -> delivery received ({len(ms)} events at light load): "
            f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
            f"max {max(ms):.2f} ms"
        )
    finally:
        await node.stop()
        await receiver.stop()
    return 0
