"""Read models carry the stream version they reflect; the `<table>_seen` tables go.

Each projection kept, per stream, the last version it applied in a `<table>_seen` row that it
rewrote on every event. The read-model rows now carry that version themselves: `projects`,
`jobs`, `webhook_endpoints` and `workers` already did; `job_phases`, `job_output_lines` and
`project_messages` get a `version` column, filled from the seen tables (every row of a stream
gets its stream's version, so the highest is the last one applied, as the projections read
it). A pruned worker's row leaves, so `workers_pruned` keeps the version its stream reached.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# (read-model table, its key column, the seen table, the stream type)
CHILDREN = (
    ("job_phases", "job_id", "job_phases_seen", "job"),
    ("job_output_lines", "job_id", "job_output_seen", "job"),
    ("project_messages", "project_id", "project_messages_seen", "project"),
)
# (seen table, the read model whose rows carry the version, its key column, the stream type)
PARENTS = (
    ("projects_seen", "projects", "project_id", "project"),
    ("jobs_seen", "jobs", "job_id", "job"),
    ("webhook_endpoints_seen", "webhook_endpoints", "endpoint_id", "webhook"),
    ("workers_seen", "workers", "worker_id", "worker"),
)


def upgrade() -> None:
    for table, key, seen, kind in CHILDREN:
        op.add_column(table, sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        op.execute(
            f"UPDATE {table} t SET version = s.version FROM {seen} s "
            f"WHERE s.stream_id = '{kind}-' || t.{key}"
        )
        op.alter_column(table, "version", server_default=None)
    op.create_table(
        "workers_pruned",
        sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.execute(
        "INSERT INTO workers_pruned (worker_id, version) "
        "SELECT substr(s.stream_id, length('worker-') + 1)::uuid, s.version FROM workers_seen s "
        "WHERE NOT EXISTS (SELECT 1 FROM workers w WHERE 'worker-' || w.worker_id = s.stream_id)"
    )
    for _, _, seen, _ in CHILDREN:
        op.drop_table(seen)
    for seen, _, _, _ in PARENTS:
        op.drop_table(seen)


def _seen(name: str) -> None:
    op.create_table(
        name,
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for seen, table, key, kind in PARENTS:
        _seen(seen)
        op.execute(
            f"INSERT INTO {seen} (stream_id, version) "
            f"SELECT '{kind}-' || {key}, version FROM {table}"
        )
    op.execute(
        "INSERT INTO workers_seen (stream_id, version) "
        "SELECT 'worker-' || worker_id, version FROM workers_pruned "
        "ON CONFLICT (stream_id) DO NOTHING"
    )
    op.drop_table("workers_pruned")
    for table, key, seen, kind in CHILDREN:
        _seen(seen)
        op.execute(
            f"INSERT INTO {seen} (stream_id, version) "
            f"SELECT '{kind}-' || {key}, max(version) FROM {table} GROUP BY {key}"
        )
        op.drop_column(table, "version")
