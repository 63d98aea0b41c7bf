"""The layers of DESIGN §1, read from the imports of the source: lower layers import no higher
ones, and the domain does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helix

PACKAGE = Path(helix.__file__).parent
IO_LIBRARIES = ("asyncpg", "aiohttp", "sqlalchemy", "json")


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, wherever in the file (functions included); relative
    imports are not used in Helix, so they count as their dotted tail."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def offending_imports(layer: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        bad = sorted(
            m for m in imported_modules(path.read_text()) if any(is_within(m, f) for f in forbidden)
        )
        if bad:
            found[str(path.relative_to(PACKAGE.parent))] = bad
    return found


def test_the_checker_sees_imports_of_every_form() -> None:
    source = "import helix.api.app\nfrom helix.api import auth\ndef f():\n    import json\n"
    assert {"helix.api.app", "helix.api", "json"} <= imported_modules(source)
    assert is_within("helix.api.auth", "helix.api")
    assert not is_within("helix.apikeys", "helix.api")


@pytest.mark.parametrize("layer", ["streams", "domain"])
def test_the_layer_has_modules_to_check(layer: str) -> None:
    assert list((PACKAGE / layer).rglob("*.py"))


def test_streams_import_nothing_from_the_api() -> None:
    assert offending_imports("streams", ("helix.api",)) == {}


def test_the_domain_imports_no_io_library() -> None:
    assert offending_imports("domain", IO_LIBRARIES) == {}
