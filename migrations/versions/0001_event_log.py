"""The event log: events, streams and the sequencer's state.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from helix.schema import Xid8

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS_HASH = b"\x00" * 32


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
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
    op.create_index(
        "events_position_key",
        "events",
        ["position"],
        unique=True,
        postgresql_where=sa.text("position IS NOT NULL"),
    )
    op.create_index(
        "events_unsequenced_idx",
        "events",
        ["transaction_id", "id"],
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_index(
        "events_project_position_idx",
        "events",
        ["project_id", "position"],
        postgresql_where=sa.text("position IS NOT NULL"),
    )
    op.create_table(
        "streams",
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("stream_type", sa.Text, nullable=False),
        sa.Column("project_id", pg.UUID(as_uuid=True)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    state = op.create_table(
        "sequencer_state",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("head_position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("head_hash", sa.LargeBinary, nullable=False),
        sa.Column("leader", sa.Text),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("id = 1", name="sequencer_state_single_row"),
    )
    op.bulk_insert(state, [{"id": 1, "head_position": 0, "head_hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_table("sequencer_state")
    op.drop_table("streams")
    op.drop_table("events")
