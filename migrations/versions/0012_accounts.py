"""Accounts: API key scopes and expiry, and revocable JWTs.

`api_keys` gains `scopes` (NULL: all the user's role allows, as every existing key), `expires_at`
and `expired_at` (when `api_key.expired` was recorded); `users` gains `tokens_valid_after` (JWTs
issued before it are refused: a password change or a revocation of all tokens). `revoked_tokens`
holds logged-out JWTs by `jti` until their `exp`. All three are part of the `users` projection;
no event before this revision sets any of them, so nothing needs backfilling.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("scopes", pg.ARRAY(sa.Text)))
    op.add_column("api_keys", sa.Column("expires_at", TZ))
    op.add_column("api_keys", sa.Column("expired_at", TZ))
    op.add_column("users", sa.Column("tokens_valid_after", TZ))
    op.create_table(
        "revoked_tokens",
        sa.Column("token_id", sa.Text, primary_key=True),
        sa.Column("user_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("expires_at", TZ, nullable=False, index=True),
        sa.Column("revoked_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revoked_tokens")
    op.drop_column("users", "tokens_valid_after")
    op.drop_column("api_keys", "expired_at")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "scopes")
