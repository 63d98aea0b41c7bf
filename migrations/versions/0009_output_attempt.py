"""Output lines name the attempt that wrote them.

`job_output_lines.attempt` is the job's claim (1, 2 …) whose worker reported the line, so a
retried job's output tells one run from the next. Every line stored before was written by a
`job.phase_output` event of schema version 1, which reads as attempt 1: the column starts at 1
for them, which is what a rebuild from the log gives, so the read model is not rebuilt.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "job_output_lines", sa.Column("attempt", sa.Integer, nullable=False, server_default="1")
    )
    op.alter_column("job_output_lines", "attempt", server_default=None)


def downgrade() -> None:
    op.drop_column("job_output_lines", "attempt")
