"""Webhook endpoints, deliveries and attempts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("owner", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("type_patterns", pg.ARRAY(sa.Text), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        _ts("previous_secret_until"),
        sa.Column("after_position", sa.BigInteger, nullable=False),
        _ts("failing_since"),
        _ts("last_failure_at"),
        _ts("last_success_at"),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("deleted_at"),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("webhook_endpoints_owner_idx", "webhook_endpoints", ["owner", "created_at"])
    op.create_table(
        "webhook_dispatcher",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("id = 1", name="webhook_dispatcher_single_row"),
    )
    # Start at the log's head: a new installation has nothing to deliver from before it.
    op.execute(
        "INSERT INTO webhook_dispatcher (id, position) "
        "SELECT 1, head_position FROM sequencer_state WHERE id = 1"
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("endpoint_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("position", sa.BigInteger),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("replay_of", pg.UUID(as_uuid=True)),
        sa.Column("payload", pg.JSONB),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at"),
        _ts("locked_until"),
        sa.Column("locked_by", pg.UUID(as_uuid=True)),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("delivered_at"),
        _ts("dead_at"),
        sa.CheckConstraint(
            "kind IN ('log', 'replay', 'retry', 'recover', 'ping')",
            name="webhook_deliveries_kind",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'dead')", name="webhook_deliveries_status"
        ),
    )
    op.create_index(
        "webhook_deliveries_log_key",
        "webhook_deliveries",
        ["endpoint_id", "event_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'log'"),
    )
    op.create_index(
        "webhook_deliveries_due_idx",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "webhook_deliveries_endpoint_idx", "webhook_deliveries", ["endpoint_id", "created_at"]
    )
    op.create_index(
        "webhook_deliveries_event_idx", "webhook_deliveries", ["event_id", "endpoint_id"]
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("endpoint_id", pg.UUID(as_uuid=True), nullable=False),
        _ts("started_at", nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error_class", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("response_body", sa.Text),
        sa.Column("response_truncated", sa.Boolean, nullable=False),
        _ts("next_attempt_at"),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )


def downgrade() -> None:
    for table in ("webhook_attempts", "webhook_deliveries", "webhook_dispatcher"):
        op.drop_table(table)
    op.drop_index("webhook_endpoints_owner_idx", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
