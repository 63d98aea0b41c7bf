"""What every subcommand needs: settings and the database it finds the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from helix import migrate
from helix.config import Settings
from helix.database import Database, create_pool
from helix.embedded import EmbeddedPostgres


class NoDatabase(Exception):
    """A command that only reads found no database to read: it creates none."""


@asynccontextmanager
async def database_url(settings: Settings, *, read_only: bool = False) -> AsyncIterator[str]:
    """The configured database, or the embedded one (joined, or started and later stopped).

    A read-only command never initialises an embedded server (nor its data dir): reading an
    empty log that it just made would only say that nothing is wrong."""
    if read_only and not settings.database_url:
        pgdata = EmbeddedPostgres(settings.data_dir).pgdata
        if not (pgdata / "PG_VERSION").exists():
            raise NoDatabase(
                f"no database: HELIX_DATABASE_URL is not set and there is no embedded "
                f"PostgreSQL in {pgdata} (set HELIX_DATA_DIR or HELIX_DATABASE_URL)"
            )
    db = Database(settings)
    url = db.start()
    try:
        yield url
    finally:
        db.stop()


@asynccontextmanager
async def pool(
    settings: Settings, *, migrate_first: bool = True, read_only: bool = False
) -> AsyncIterator[asyncpg.Pool]:
    async with database_url(settings, read_only=read_only) as url:
        if migrate_first:
            await migrate.upgrade(url)
        p = await create_pool(url, settings, application_name="helix-cli", max_size=4)
        try:
            yield p
        finally:
            await p.close()
