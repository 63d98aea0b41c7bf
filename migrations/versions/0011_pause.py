"""Jobs can be paused: `jobs.pause_requested` is set while a pause waits for the running phase
to end (the job's status then becomes `paused`).

No job was ever paused before, so every existing row starts false, which is what a rebuild
from the log gives: the read model is not rebuilt.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("pause_requested", sa.Boolean, nullable=False, server_default="false")
    )
    op.alter_column("jobs", "pause_requested", server_default=None)


def downgrade() -> None:
    op.drop_column("jobs", "pause_requested")
