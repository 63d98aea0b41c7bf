"""The named SQL of the webhooks package, with the visibility rule spliced in once."""

from __future__ import annotations

from helix.eventstore.sql import load


def _load() -> dict[str, str]:
    blocks = load("helix.webhooks", "queries.sql")
    visible = blocks.pop("visible")
    return {name: text.replace("{visible}", visible) for name, text in blocks.items()}


QUERIES = _load()
