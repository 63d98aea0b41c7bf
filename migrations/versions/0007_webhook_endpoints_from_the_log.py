"""Webhook endpoints from the log: the endpoint table becomes a projection of the webhook
streams; secrets move to `webhook_secrets` and delivery health to `webhook_health`.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True))


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
    )
    op.create_table(
        "webhook_health",
        sa.Column("endpoint_id", pg.UUID(as_uuid=True), primary_key=True),
        _ts("failing_since"),
        _ts("last_failure_at"),
        _ts("last_success_at"),
    )
    op.create_table(
        "webhook_endpoints_seen",
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    # A deleted endpoint's secret was already blanked: it has none to keep.
    op.execute(
        "INSERT INTO webhook_secrets (endpoint_id, secret, previous_secret) "
        "SELECT endpoint_id, secret, previous_secret FROM webhook_endpoints "
        "WHERE deleted_at IS NULL"
    )
    op.execute(
        "INSERT INTO webhook_health (endpoint_id, failing_since, last_failure_at, "
        "last_success_at) "
        "SELECT endpoint_id, failing_since, last_failure_at, last_success_at "
        "FROM webhook_endpoints"
    )
    # The projection has applied each endpoint's stream up to its current version.
    op.execute(
        "INSERT INTO webhook_endpoints_seen (stream_id, version) "
        "SELECT s.stream_id, s.version FROM webhook_endpoints w "
        "JOIN streams s ON s.stream_id = 'webhook-' || w.endpoint_id::text"
    )
    op.execute(
        "UPDATE webhook_endpoints w SET version = s.version FROM streams s "
        "WHERE s.stream_id = 'webhook-' || w.endpoint_id::text"
    )
    for column in ("secret", "previous_secret", "failing_since", "last_failure_at",
                   "last_success_at"):  # fmt: skip
        op.drop_column("webhook_endpoints", column)


def downgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("secret", sa.Text))
    op.add_column("webhook_endpoints", sa.Column("previous_secret", sa.Text))
    for column in ("failing_since", "last_failure_at", "last_success_at"):
        op.add_column("webhook_endpoints", _ts(column))
    op.execute(
        "UPDATE webhook_endpoints w SET secret = s.secret, previous_secret = s.previous_secret "
        "FROM webhook_secrets s WHERE s.endpoint_id = w.endpoint_id"
    )
    op.execute("UPDATE webhook_endpoints SET secret = '' WHERE secret IS NULL")
    op.execute(
        "UPDATE webhook_endpoints w SET failing_since = h.failing_since, "
        "last_failure_at = h.last_failure_at, last_success_at = h.last_success_at "
        "FROM webhook_health h WHERE h.endpoint_id = w.endpoint_id"
    )
    op.alter_column("webhook_endpoints", "secret", nullable=False)
    op.drop_table("webhook_endpoints_seen")
    op.drop_table("webhook_health")
    op.drop_table("webhook_secrets")
