"""Claims by priority, from an index, under kept running counts.

`jobs.priority` is the job's priority as a rank (0 low, 1 normal, 2 high, 3 critical); every
job before had none, which is `normal`, what a rebuild from the log gives. Two partial indexes
hold only the claimable jobs (queued, not cancelling), one in claim order (priority first,
oldest first) and one by age (for the promotion of a job that waited too long), so a claim reads
a few index entries however many jobs ever ran. `job_owners` keeps each owner's running jobs
(part of the `jobs` read model, kept by its projection), so the per-owner limit is read, not
counted, at every claim; it starts from the jobs as they are, a row for every owner.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

CLAIMABLE = "status = 'queued' AND NOT cancel_requested"


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("priority", sa.SmallInteger, nullable=False, server_default="1")
    )
    op.alter_column("jobs", "priority", server_default=None)
    op.create_index(
        "jobs_claim_order_idx",
        "jobs",
        [sa.text("priority DESC"), "created_at", "job_id"],
        postgresql_where=sa.text(CLAIMABLE),
    )
    op.create_index(
        "jobs_claim_age_idx", "jobs", ["created_at", "job_id"], postgresql_where=sa.text(CLAIMABLE)
    )
    op.create_table(
        "job_owners",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("running", sa.Integer, nullable=False),
    )
    op.execute(
        "INSERT INTO job_owners (owner, running)"
        " SELECT owner, count(*) FILTER (WHERE status = 'running') FROM jobs GROUP BY owner"
    )


def downgrade() -> None:
    op.drop_table("job_owners")
    op.drop_index("jobs_claim_age_idx", table_name="jobs")
    op.drop_index("jobs_claim_order_idx", table_name="jobs")
    op.drop_column("jobs", "priority")
