"""Fixtures for webhook tests (beside the shared ones of tests/integration/fixtures.py):
settings with a short retry schedule, a real aiohttp receiver that verifies every request with
the `standardwebhooks` library, and helpers to make events and wait for deliveries.

The node's settings allow 127.0.0.0/8 so the receiver (on loopback) may be reached; SSRF tests
build their own guard without that allowance.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from webhook_support import Receiver, free_port

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services import Services
from helix.webhooks import WebhookRoles
from tests.integration.fixtures import Caller


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
def make_projects(services: Services) -> Callable[..., Awaitable[list[uuid.UUID]]]:
    """`await make_projects(caller, n)`: n new projects (each a `project.created` event)."""

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
