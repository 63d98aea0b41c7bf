"""Helpers of the webhook tests: a verifying receiver, a resolver whose answers the test
decides, waiting and reading rows."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import attrs
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# The callers of the shared fixtures, under the name these tests import.
from tests.integration.fixtures import Caller as Caller

WAIT = 20.0  # an upper bound on waiting for deliveries, never a pass/fail timing


@attrs.define
class Received:
    webhook_id: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    verified: bool
    peer_port: int = 0  # the sender's side of the connection it came on


@attrs.define
class Receiver:
    """An aiohttp server that answers `status` (a callable may vary it per request) and
    verifies every request's signature against `secrets` with the standardwebhooks library."""

    port: int
    secrets: list[str] = attrs.field(factory=list)
    status: Callable[[Received], int] = lambda _r: 200
    headers: dict[str, str] = attrs.field(factory=dict)
    received: list[Received] = attrs.field(factory=list)
    runner: web.AppRunner | None = None
    arrived: asyncio.Condition = attrs.field(factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _verified(self, raw: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(raw, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        got = Received(
            webhook_id=headers.get("webhook-id", ""),
            path=request.path,
            body=json.loads(raw),
            headers=headers,
            verified=self._verified(raw, headers),
            peer_port=request.transport.get_extra_info("peername")[1] if request.transport else 0,
        )
        self.received.append(got)
        async with self.arrived:
            self.arrived.notify_all()
        return web.Response(status=self.status(got), text="ok", headers=self.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def wait_for(self, predicate: Callable[[list[Received]], bool]) -> None:
        async def reached() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: predicate(self.received))

        await asyncio.wait_for(reached(), WAIT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` until it holds (bounded by WAIT)."""

    async def loop() -> None:
        while not await check():  # noqa: ASYNC110 (the database has no event to wait on)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), WAIT)


async def delivery_rows(pool: asyncpg.Pool, endpoint_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY position",
            uuid.UUID(endpoint_id),
        )
    )


async def attempt_rows(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id
        )
    )


class StaticResolver(AbstractResolver):
    """A DNS server whose answers the test decides: each name has its successive answers (the
    last one repeats); a name it does not know does not resolve."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = {name: list(seq) for name, seq in answers.items()}

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        script = self.answers[host]
        answer = script.pop(0) if len(script) > 1 else script[0]
        return [
            {"hostname": host, "host": address, "port": port,
             "family": socket.AF_INET6 if ":" in address else socket.AF_INET, "proto": 0,
             "flags": socket.AI_NUMERICHOST}
            for address in answer
        ]  # fmt: skip

    async def close(self) -> None:
        return None
