"""What every subcommand needs: settings and the database it finds the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from helix import migrate
from helix.config import Settings
from helix.database import Database, create_pool


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured database, or the embedded one (joined, or started and later stopped)."""
    db = Database(settings)
    url = db.start()
    try:
        yield url
    finally:
        db.stop()


@asynccontextmanager
async def pool(settings: Settings, *, migrate_first: bool = True) -> AsyncIterator[asyncpg.Pool]:
    async with database_url(settings) as url:
        if migrate_first:
            await migrate.upgrade(url)
        p = await create_pool(url, settings, application_name="helix-cli", max_size=4)
        try:
            yield p
        finally:
            await p.close()
