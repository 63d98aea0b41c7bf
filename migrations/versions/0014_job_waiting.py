"""Jobs carry when they were last said to be waiting (`job.waiting`) for a capable worker.

`jobs.waiting_since` is set by `job.waiting` and cleared once the job is claimed, paused or
over, so the reaper finds the queued jobs it has not yet reported with one query. No job was
reported before, which is what a rebuild from the log gives: the read model is not rebuilt.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("waiting_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("jobs", "waiting_since")
