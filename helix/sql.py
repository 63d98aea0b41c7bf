"""Loads the named SQL blocks of a package's `.sql` file once.

Blocks start with `-- name: <name>`. A block named in `fragments` is not a query of its own:
it is spliced into the other blocks wherever they say `{<name>}`, so a rule that several
queries share is written once. `shared` fragments are spliced the same way, for a rule written
outside the file (who may see what: `helix.access`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources


def load(
    package: str,
    filename: str,
    fragments: tuple[str, ...] = (),
    shared: Mapping[str, str] | None = None,
) -> dict[str, str]:
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", text, re.M | re.S):
        lines = [line for line in match.group(2).splitlines() if not line.startswith("--")]
        blocks[match.group(1)] = "\n".join(lines).strip()
    spliced = {name: blocks.pop(name) for name in fragments} | dict(shared or {})
    for name, fragment in spliced.items():
        blocks = {query: sql.replace("{" + name + "}", fragment) for query, sql in blocks.items()}
    return blocks
