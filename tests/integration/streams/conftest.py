"""Fixtures for the live-stream tests: the API app with streams installed, the API tests'
callers (reused from tests/integration/api/conftest.py), and helpers that create projects and
jobs through the service layer and read event streams."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services import Services
from helix.streams import Tailer


def _api_fixtures() -> Any:
    name = "helix_api_test_fixtures"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "api" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_api = _api_fixtures()
Caller = _api.Caller
accounts = _api.accounts
make_caller = _api.make_caller
admin = _api.admin
user = _api.user
other_user = _api.other_user
worker = _api.worker
auditor = _api.auditor
token_for = _api.token_for
app = _api.app
client = _api.client
make_client = _api.make_client

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


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
def services(node: LogNode, settings: Settings) -> Services:
    return Services.build(node.store, settings)


@pytest.fixture
async def tailer(node: LogNode) -> AsyncIterator[Tailer]:
    """A tailer of its own (in-process tests), beside the app's."""
    t = Tailer(node.store, buffer_size=50, recent=64, batch_size=100, poll_interval=1.0)
    await t.start()
    try:
        yield t
    finally:
        await t.stop()
