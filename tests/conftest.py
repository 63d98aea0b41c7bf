"""Test fixtures: one embedded PostgreSQL per session, a fresh database per test cloned from a
migrated template."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import with_database
from helix.embedded import EmbeddedPostgres
from helix.migrate import alembic_config

TEMPLATE = "helix_template"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The server's maintenance URL: HELIX_TEST_DATABASE_URL, or a private embedded server."""
    external = os.environ.get("HELIX_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="helix-test-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", durable=False)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_url(pg_url: str) -> str:
    asyncio.run(
        _admin(
            pg_url,
            f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
            f"CREATE DATABASE {TEMPLATE}",
        )
    )
    url = with_database(pg_url, TEMPLATE)
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture
async def database_url(pg_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    await _admin(pg_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield with_database(pg_url, name)
    finally:
        await _admin(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings() -> Settings:
    return Settings(sequencer_poll_interval=0.2, wakeup_interval=0.001)


@pytest.fixture
async def node(database_url: str, settings: Settings) -> AsyncIterator[LogNode]:
    """Store, head watcher and sequencer on a fresh database."""
    log_node = LogNode(database_url, settings)
    await log_node.start()
    try:
        yield log_node
    finally:
        await log_node.stop()
