"""The named SQL of authentication and user management (`queries.sql`)."""

from __future__ import annotations

from helix.sql import load

QUERIES = load("helix.auth", "queries.sql", fragments=("user_columns", "key_columns"))
