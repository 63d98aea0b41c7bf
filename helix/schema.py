"""The database schema as SQLAlchemy Core metadata.

Only alembic uses this (migrations are written against it, and a test checks that the migrated
database matches it). At run time Helix talks to PostgreSQL through asyncpg and named SQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type (PostgreSQL 13+)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
    # Insertion order (not indexed): breaks ties between rows of one transaction.
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("stream_type", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("project_id", pg.UUID(as_uuid=True)),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("data", pg.JSONB, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column(
        "recorded_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.text("clock_timestamp()"),
    ),
    sa.Column(
        "transaction_id", Xid8(), nullable=False, server_default=sa.text("pg_current_xact_id()")
    ),
    sa.Column("position", sa.BigInteger),
    sa.Column("hash", sa.LargeBinary),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_version_key"),
    sa.CheckConstraint("version > 0", name="events_version_positive"),
    sa.CheckConstraint("(position IS NULL) = (hash IS NULL)", name="events_position_has_hash"),
)
# Every index on `events` costs twice per event: at the append and again when the sequencer
# writes the position (an update of an indexed column is never HOT). Position indexes are
# partial, so appends do not touch them; the unsequenced index is partial the other way round.
sa.Index(
    "events_position_key",
    events.c.position,
    unique=True,
    postgresql_where=events.c.position.isnot(None),
)
sa.Index(
    "events_unsequenced_idx",
    events.c.transaction_id,
    events.c.id,
    postgresql_where=events.c.position.is_(None),
)
sa.Index(
    "events_project_position_idx",
    events.c.project_id,
    events.c.position,
    postgresql_where=events.c.position.isnot(None),
)

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("stream_type", sa.Text, nullable=False),
    sa.Column("project_id", pg.UUID(as_uuid=True)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
)

sequencer_state = sa.Table(
    "sequencer_state",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("head_position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("head_hash", sa.LargeBinary, nullable=False),
    sa.Column("leader", sa.Text),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    ),
    sa.CheckConstraint("id = 1", name="sequencer_state_single_row"),
)
