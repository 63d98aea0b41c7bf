"""Fixtures for webhook tests: settings with a short retry schedule, callers of each role, a
real aiohttp receiver that verifies every request with the `standardwebhooks` library, and
helpers to make events and wait for deliveries.

The node's settings allow 127.0.0.0/8 so the receiver (on loopback) may be reached; SSRF tests
build their own guard without that allowance.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver, free_port

from helix.api.app import create_app
from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.config import Settings
from helix.domain.user import Role
from helix.services import Services, system_caller
from helix.webhooks import WebhookRoles

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TEST_METADATA = {"actor": "test", "source": "pytest"}
TEST_CALLER = attrs.evolve(system_caller("test"), actor="test", source="pytest")


@pytest.fixture
def settings() -> Settings:
    return Settings(
        sequencer_poll_interval=0.2,
        wakeup_interval=0.001,
        rate_limit_per_minute=0,
        webhook_retry_schedule=(0, 0.2, 0.4),
        webhook_allowed_networks=("127.0.0.0/8", "::1/128"),
        webhook_poll_interval=0.05,
        webhook_timeout=5.0,
        webhook_lease=10.0,
    )


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, node: LogNode, settings: Settings
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(node, settings))


@pytest.fixture
def make_client(
    aiohttp_client: AiohttpClient, node: LogNode, settings: Settings
) -> Callable[..., Awaitable[TestClient[Any, Any]]]:
    """A client on an app with changed settings: `await make_client(webhook_timeout=1)`."""

    async def make(**changes: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(node, attrs.evolve(settings, **changes)))

    return make


@pytest.fixture
def make_caller(node: LogNode) -> Callable[..., Awaitable[Caller]]:
    accounts = Accounts(node.store)

    async def make(role: str, username: str) -> Caller:
        user = await accounts.create_user(username, Role(role), None, caller=TEST_CALLER)
        _, key = await accounts.create_key(user.user_id, "test key", caller=TEST_CALLER)
        return Caller(user=await accounts.get(user.user_id), key=key)

    return make


@pytest.fixture
async def admin(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("admin", "root")


@pytest.fixture
async def user(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("user", "alice")


@pytest.fixture
async def other_user(make_caller: Callable[..., Awaitable[Caller]]) -> Caller:
    return await make_caller("user", "bob")


@pytest.fixture
def make_projects(node: LogNode, settings: Settings) -> Callable[..., Awaitable[list[uuid.UUID]]]:
    """`await make_projects(caller, n)`: n new projects (each a `project.created` event)."""
    services = Services.build(node.store, settings)

    async def make(caller: Caller, count: int = 1) -> list[uuid.UUID]:
        made = []
        for n in range(count):
            state = await services.projects.create(caller.service, name=f"p{n}", phases=())
            assert state.id is not None
            made.append(state.id)
        return made

    return make


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A started receiver (answering 200)."""
    r = Receiver(port=free_port())
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def idle_receiver() -> Receiver:
    """A receiver on a free port that nobody listens on until the test starts it."""
    return Receiver(port=free_port())


@pytest.fixture
async def webhooks(node: LogNode, settings: Settings) -> AsyncIterator[WebhookRoles]:
    """A dispatcher and a delivery worker, running."""
    roles = WebhookRoles(node.store, settings)
    await roles.start()
    try:
        yield roles
    finally:
        await roles.stop()
