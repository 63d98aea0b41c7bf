"""Read models behind the REST API and the projection checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
SEEN = ("projects_seen", "jobs_seen", "job_phases_seen", "job_output_seen", "project_messages_seen")


def upgrade() -> None:
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.text("now()")),
    )
    for name in SEEN:
        op.create_table(
            name,
            sa.Column("stream_id", sa.Text, primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
        )
    op.create_table(
        "projects",
        sa.Column("project_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("project_type", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("phases", pg.JSONB, nullable=False),
        sa.Column("latest_job_id", pg.UUID(as_uuid=True)),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("projects_owner_created_idx", "projects", ["owner", "created_at"])
    op.create_index("projects_status_idx", "projects", ["status"])
    op.create_index("projects_type_idx", "projects", ["project_type"])
    op.create_table(
        "jobs",
        sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("project_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("start_phase", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("worker_id", sa.Text),
        sa.Column("fencing_token", sa.Integer, nullable=False),
        sa.Column("lease_expires_at", TZ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("not_before", TZ),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("cost_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("cancel_reason", sa.Text),
        sa.Column("dead_lettered", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("jobs_owner_created_idx", "jobs", ["owner", "created_at"])
    op.create_index("jobs_project_created_idx", "jobs", ["project_id", "created_at"])
    op.create_index("jobs_status_idx", "jobs", ["status", "owner"])
    op.create_table(
        "job_phases",
        sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("command", pg.JSONB),
        sa.Column("timeout_s", sa.Float),
        sa.Column("capabilities", pg.JSONB, nullable=False),
        sa.Column("env", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("output_lines", sa.Integer, nullable=False),
        sa.Column("files", pg.JSONB, nullable=False),
        sa.Column("cost_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("skip_reason", sa.Text),
        sa.UniqueConstraint("job_id", "name", name="job_phases_job_name_key"),
    )
    op.create_table(
        "job_output_lines",
        sa.Column("job_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index(
        "job_output_lines_phase_idx",
        "job_output_lines",
        ["job_id", "phase", "line_no"],
        unique=True,
    )
    op.create_table(
        "project_messages",
        sa.Column("message_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("project_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index(
        "project_messages_project_seq_idx", "project_messages", ["project_id", "seq"], unique=True
    )


def downgrade() -> None:
    for name in (
        "project_messages",
        "job_output_lines",
        "job_phases",
        "jobs",
        "projects",
        *reversed(SEEN),
        "projection_checkpoints",
    ):
        op.drop_table(name)
