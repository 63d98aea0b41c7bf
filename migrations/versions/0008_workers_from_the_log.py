"""Workers from the log: the registry becomes a projection, liveness a runtime table.

`workers` keeps what the worker streams say (registration, online/offline) and the stream
version it reflects, with `workers_seen` like every projection; the reported status, current
job, latest resources and last heartbeat move to `worker_heartbeats`. Existing values are
copied across, and the registry columns are set from the log, so the live table equals a
rebuild from the first upgrade on.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
STREAM = "'worker-' || w.worker_id::text"


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("current_job_id", pg.UUID(as_uuid=True)),
        sa.Column("resources", pg.JSONB),
        sa.Column("last_heartbeat_at", TZ, nullable=False),
    )
    op.create_index("worker_heartbeats_last_idx", "worker_heartbeats", ["last_heartbeat_at"])
    op.execute(
        "INSERT INTO worker_heartbeats (worker_id, status, current_job_id, resources, "
        "last_heartbeat_at) "
        "SELECT worker_id, CASE WHEN status = 'offline' THEN 'idle' ELSE status END, "
        "CASE WHEN online THEN current_job_id END, resources, last_heartbeat_at FROM workers"
    )
    op.create_table(
        "workers_seen",
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.execute(
        "INSERT INTO workers_seen (stream_id, version) "
        "SELECT stream_id, version FROM streams WHERE stream_type = 'worker'"
    )
    op.add_column("workers", sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    op.alter_column("workers", "version", server_default=None)
    op.execute(
        f"UPDATE workers w SET version = s.version FROM streams s WHERE s.stream_id = {STREAM}"
    )
    # The registry as the log has it: resources as registered, online as last recorded (a
    # claim used to set a worker online in place, with no event).
    op.execute(
        "UPDATE workers w SET resources = e.data->'resources' FROM events e "
        f"WHERE e.stream_id = {STREAM} AND e.type = 'worker.registered'"
    )
    op.execute(
        "UPDATE workers w SET online = last.type <> 'worker.offline', "
        "offline_since = CASE WHEN last.type = 'worker.offline' "
        "THEN (last.data->>'at')::timestamptz END "
        "FROM (SELECT DISTINCT ON (stream_id) stream_id, type, data FROM events "
        "WHERE stream_type = 'worker' ORDER BY stream_id, version DESC) last "
        f"WHERE last.stream_id = {STREAM}"
    )
    op.drop_index("workers_online_heartbeat_idx", table_name="workers")
    for column in ("status", "current_job_id", "last_heartbeat_at"):
        op.drop_column("workers", column)
    op.create_index("workers_online_idx", "workers", ["online", "registered_at"])


def downgrade() -> None:
    op.drop_index("workers_online_idx", table_name="workers")
    op.add_column("workers", sa.Column("status", sa.Text))
    op.add_column("workers", sa.Column("current_job_id", pg.UUID(as_uuid=True)))
    op.add_column("workers", sa.Column("last_heartbeat_at", TZ))
    op.execute(
        "UPDATE workers w SET "
        "status = CASE WHEN w.online THEN coalesce(h.status, 'idle') ELSE 'offline' END, "
        "current_job_id = CASE WHEN w.online THEN h.current_job_id END, "
        "resources = coalesce(h.resources, w.resources), "
        "last_heartbeat_at = coalesce(h.last_heartbeat_at, w.registered_at) "
        "FROM workers w2 LEFT JOIN worker_heartbeats h USING (worker_id) "
        "WHERE w2.worker_id = w.worker_id"
    )
    op.alter_column("workers", "status", nullable=False)
    op.alter_column("workers", "last_heartbeat_at", nullable=False)
    op.create_index("workers_online_heartbeat_idx", "workers", ["online", "last_heartbeat_at"])
    op.drop_column("workers", "version")
    op.drop_table("workers_seen")
    op.drop_index("worker_heartbeats_last_idx", table_name="worker_heartbeats")
    op.drop_table("worker_heartbeats")
