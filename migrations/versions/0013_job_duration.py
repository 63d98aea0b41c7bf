"""Jobs carry their duration limit, and projects their own.

`jobs.max_duration_s` is the limit a job was queued with (seconds from its start; NULL: none),
so the reaper finds the jobs running past theirs with one query; `projects.max_job_duration_s`
is the project's own limit (NULL: the deployment's). Every job and project before had none,
which is what a rebuild from the log gives, so the read models are not rebuilt.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("max_duration_s", sa.Float))
    op.add_column("projects", sa.Column("max_job_duration_s", sa.Float))


def downgrade() -> None:
    op.drop_column("projects", "max_job_duration_s")
    op.drop_column("jobs", "max_duration_s")
