"""A phase's resource usage: CPU seconds, peak resident memory, bytes read and written.

The figures of the phase's latest run, as its worker last reported them
(`job.phase_resources`); NULL for every phase before, which reported none, as a rebuild from
the log gives.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = (
    ("cpu_s", sa.Float),
    ("max_rss_bytes", sa.BigInteger),
    ("read_bytes", sa.BigInteger),
    ("write_bytes", sa.BigInteger),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("job_phases", sa.Column(name, kind))


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.drop_column("job_phases", name)
