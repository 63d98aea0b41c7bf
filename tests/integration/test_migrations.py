from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

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


async def test_an_endpoint_keeps_its_secrets_and_health_through_the_upgrade_to_the_log(
    database_url: str,
) -> None:
    await migrate.downgrade(database_url, "0005")
    endpoint_id, owner = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO streams (stream_id, stream_type, version) VALUES ($1, 'webhook', 3)",
            f"webhook-{endpoint_id}",
        )
        await conn.execute(
            "INSERT INTO webhook_endpoints (endpoint_id, owner, url, event_types, type_patterns,"
            " description, enabled, secret, previous_secret, previous_secret_until,"
            " after_position, failing_since, last_failure_at, last_success_at, created_at,"
            " updated_at, version)"
            " VALUES ($1, $2, 'https://hooks.example/', '{job.*}', '{job.%}', '', true,"
            " 'whsec_new', 'whsec_old', $3, 7, $3, $3, $4, $4, $4, 2)",
            endpoint_id, owner, at, at - timedelta(days=1),
        )  # fmt: skip
        await migrate.upgrade(database_url)
        secrets = await conn.fetchrow(
            "SELECT * FROM webhook_secrets WHERE endpoint_id = $1", endpoint_id
        )
        health = await conn.fetchrow(
            "SELECT * FROM webhook_health WHERE endpoint_id = $1", endpoint_id
        )
        row = await conn.fetchrow(
            "SELECT * FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id
        )
        assert (secrets["secret"], secrets["previous_secret"]) == ("whsec_new", "whsec_old")
        health_columns = ("failing_since", "last_failure_at", "last_success_at")
        assert tuple(health[k] for k in health_columns) == (at, at, at - timedelta(days=1))
        assert "secret" not in row and row["previous_secret_until"] == at
        assert row["after_position"] == 7 and row["version"] == 3

        await migrate.downgrade(database_url, "0005")
        back = await conn.fetchrow(
            "SELECT secret, previous_secret, failing_since FROM webhook_endpoints"
            " WHERE endpoint_id = $1",
            endpoint_id,
        )
        assert tuple(back) == ("whsec_new", "whsec_old", at)
        await migrate.upgrade(database_url)
    finally:
        await conn.close()
