"""The named SQL of the streams package (`queries.sql`)."""

from __future__ import annotations

from helix.sql import load

QUERIES = load("helix.streams", "queries.sql")
