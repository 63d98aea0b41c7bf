"""Loads the named SQL blocks of `queries.sql` once."""

from __future__ import annotations

import re
from importlib import resources


def load(package: str, filename: str) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", text, re.M | re.S):
        lines = [line for line in match.group(2).splitlines() if not line.startswith("--")]
        blocks[match.group(1)] = "\n".join(lines).strip()
    return blocks


QUERIES = load("helix.eventstore", "queries.sql")
