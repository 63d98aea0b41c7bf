"""The artifact store: the bytes of the files phases produced, in chunks, once per content.

`artifact_blobs` is one upload, `artifact_chunks` its bytes in order, `artifact_contents` the
blob that holds each checked content (by sha256). The log records what each stored file is
(`job.artifact_stored`); nothing here is a projection, so nothing is rebuilt.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "artifact_blobs",
        sa.Column("blob_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "artifact_chunks",
        sa.Column(
            "blob_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("artifact_blobs.blob_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "artifact_contents",
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column(
            "blob_id",
            pg.UUID(as_uuid=True),
            sa.ForeignKey("artifact_blobs.blob_id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_contents")
    op.drop_table("artifact_chunks")
    op.drop_table("artifact_blobs")
