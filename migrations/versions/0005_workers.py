"""Workers: the registry behind the worker protocol.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("capabilities", pg.JSONB, nullable=False),
        sa.Column("resources", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("current_job_id", pg.UUID(as_uuid=True)),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offline_since", sa.DateTime(timezone=True)),
    )
    op.create_index("workers_user_idx", "workers", ["user_id", "registered_at"])
    op.create_index("workers_online_heartbeat_idx", "workers", ["online", "last_heartbeat_at"])


def downgrade() -> None:
    op.drop_index("workers_online_heartbeat_idx", table_name="workers")
    op.drop_index("workers_user_idx", table_name="workers")
    op.drop_table("workers")
