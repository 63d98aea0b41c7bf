"""tests/unit stays pure: no test module there starts processes, opens sockets or talks to a
database. Tests that need those belong in tests/integration or tests/e2e."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

UNIT = Path(__file__).parent
# Modules whose import means processes, sockets, a database or system users (Helix's own
# process runner, process sweeper and user management among them).
IMPURE_MODULES = frozenset(
    {
        "subprocess",
        "socket",
        "asyncpg",
        "aiohttp.test_utils",
        "helix.worker.process",
        "helix.worker.sweep",
        "helix.system_users",
    }
)
# Names whose use means a child process even without importing `subprocess`.
IMPURE_NAMES = frozenset({"create_subprocess_exec", "create_subprocess_shell", "Popen", "fork"})


def impurities(source: str) -> list[str]:
    """What a module's source uses that a pure test may not, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.Attribute) and node.attr in IMPURE_NAMES:
            names = [node.attr]
        elif isinstance(node, ast.Name) and node.id in IMPURE_NAMES:
            names = [node.id]
        else:
            continue
        for name in names:
            if name in IMPURE_NAMES or any(
                name == m or name.startswith(f"{m}.") for m in IMPURE_MODULES
            ):
                found.append(f"{node.lineno}: {name}")
    return found


@pytest.mark.parametrize("path", sorted(UNIT.glob("*.py")), ids=lambda p: p.name)
def test_no_unit_test_module_starts_processes_opens_sockets_or_reaches_a_database(
    path: Path,
) -> None:
    assert impurities(path.read_text()) == []


@pytest.mark.parametrize(
    "source",
    [
        "import subprocess",
        "import socket as s",
        "from asyncpg import connect",
        "from aiohttp.test_utils import TestServer",
        "import asyncio\nasyncio.create_subprocess_exec('true')",
        "from asyncio import create_subprocess_shell",
        "import os\nos.fork()",
        "from helix.worker.process import run",
    ],
)
def test_the_purity_check_catches_each_kind_of_impurity(source: str) -> None:
    assert impurities(source) != []


def test_the_purity_check_passes_a_pure_module() -> None:
    assert impurities("import asyncio\nimport json\nfrom helix.domain import job\n") == []
