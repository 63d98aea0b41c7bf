"""Fixtures for the live-stream tests (beside the shared ones of tests/integration/fixtures.py):
settings with short stream intervals, and a tailer of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.streams import Tailer


@pytest.fixture
def settings() -> Settings:
    return Settings(
        sequencer_poll_interval=0.2,
        wakeup_interval=0.001,
        rate_limit_per_minute=0,
        stream_heartbeat_interval=5.0,
        stream_poll_interval=1.0,
    )


@pytest.fixture
async def tailer(node: LogNode) -> AsyncIterator[Tailer]:
    """A tailer of its own (in-process tests), beside the app's."""
    t = Tailer(node.store, buffer_size=50, recent=64, batch_size=100, poll_interval=1.0)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()
