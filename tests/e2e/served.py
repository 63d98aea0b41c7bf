"""A real `helix serve` (API, sequencer, projections and the in-process worker) on the test's
database, with its first admin's key: the server the client and CLI tests talk to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import attrs
import pytest

from tests.e2e.processes import HELIX, Server, free_port, helix_env, stop, wait_ready

ANONYMOUS_PER_MINUTE = 4
PHASE_USER = "helix-phase-sdk"


@attrs.frozen
class Served:
    url: str
    admin_key: str
    server: Server


@contextlib.asynccontextmanager
async def serving(database_url: str, data_dir: Path, **settings: str) -> AsyncIterator[Served]:
    """`helix serve` on its own port with these settings, until the block ends."""
    port = free_port()
    env = helix_env(database_url, data_dir, **settings)
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE
    )
    server = Server(proc, f"http://127.0.0.1:{port}")
    try:
        key = (await server.read_until("admin API key:")).split(":", 1)[1].strip()
        await server.read_until(f"serving on {server.url}")
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, server.url)
        yield Served(server.url, key, server)
    finally:
        await stop(proc)


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(
        database_url,
        tmp_path / "data",
        HELIX_STREAM_HEARTBEAT_INTERVAL="1",
        HELIX_ACCESS_LOG="false",
        # As root, the in-process worker runs phases as a user that no other worker shares.
        HELIX_PHASE_USER=PHASE_USER,
        # Bad credentials are charged to the caller's address: a few, then 429.
        HELIX_RATE_LIMIT_ANONYMOUS_PER_MINUTE=str(ANONYMOUS_PER_MINUTE),
    ) as found:
        yield found
