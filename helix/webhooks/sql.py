"""The named SQL of the webhooks package, with the visibility rule spliced in once."""

from __future__ import annotations

from helix.eventstore.sql import load

QUERIES = load("helix.webhooks", "queries.sql", fragments=("visible",))
