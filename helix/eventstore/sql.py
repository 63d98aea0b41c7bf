"""Loads the named SQL blocks of a package's `.sql` file once.

Blocks start with `-- name: <name>`. A block named in `fragments` is not a query of its own:
it is spliced into the other blocks wherever they say `{<name>}`, so a rule that several
queries share is written once."""

from __future__ import annotations

import re
from importlib import resources


def load(package: str, filename: str, fragments: tuple[str, ...] = ()) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", text, re.M | re.S):
        lines = [line for line in match.group(2).splitlines() if not line.startswith("--")]
        blocks[match.group(1)] = "\n".join(lines).strip()
    spliced = {name: blocks.pop(name) for name in fragments}
    for name, fragment in spliced.items():
        blocks = {query: sql.replace("{" + name + "}", fragment) for query, sql in blocks.items()}
    return blocks


QUERIES = load(
    "helix.eventstore", "queries.sql", fragments=("audit_columns", "audit_filters", "audit_viewer")
)
