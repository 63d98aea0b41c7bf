from __future__ import annotations

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from helix import migrate
from helix.database import sqlalchemy_url
from helix.schema import metadata


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def test_migrations_upgrade_downgrade_and_upgrade_again(database_url: str) -> None:
    await migrate.downgrade(database_url, "base")
    assert await _tables(database_url) <= {"alembic_version"}
    await migrate.upgrade(database_url)
    assert {"events", "streams", "sequencer_state"} <= await _tables(database_url)
    await migrate.downgrade(database_url, "base")
    await migrate.upgrade(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == (
            migrate.head_revision()
        )
        assert await conn.fetchval("SELECT head_position FROM sequencer_state") == 0
    finally:
        await conn.close()


@pytest.mark.filterwarnings("ignore:Did not recognize type .xid8.")
async def test_the_migrated_schema_matches_the_metadata(database_url: str) -> None:
    engine = create_async_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": False}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == []
