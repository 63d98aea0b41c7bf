"""One write path, checked on the source: nothing but the unit of work appends to the log, and
nothing but the projections writes a read model.

Two ways a write could go around the unit of work: calling `EventStore.append` (or the append
SQL) elsewhere, or writing a projection's table directly. The first is found in the syntax tree
(any call of an attribute named `append` on something named `store`, or of `append_one` /
`append_any`); the second in the SQL text of every `.py` and `.sql` file outside `projections/`
and `migrations/`. The benchmarks append raw events on purpose (they measure the store itself,
beside a raw-PostgreSQL baseline); the importer loads an export's rows as they were, positioned
and hashed, and then rebuilds every projection from them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from projections import registry

ROOT = Path(__file__).resolve().parents[2]
# Who may append: the unit of work; the event store itself; benchmarks of the store.
APPENDERS = {"helix/services/unit.py"}
ALLOWED_DIRS = ("helix/eventstore/", "helix/bench/")
READ_MODELS = sorted({t for p in registry.ALL for t in p.tables})
WRITE = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\{?(" + "|".join(READ_MODELS) + r")\b\}?",
    re.IGNORECASE,
)


def _sources(*suffixes: str) -> list[Path]:
    return sorted(p for s in suffixes for p in (ROOT / "helix").rglob(f"*{s}"))


def _appends(tree: ast.AST) -> list[int]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        owner = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if node.func.attr == "append" and "store" in owner.lower():
            found.append(node.lineno)
    return found


def test_only_the_unit_of_work_appends_to_the_log() -> None:
    offenders = []
    for path in _sources(".py"):
        name = path.relative_to(ROOT).as_posix()
        if name in APPENDERS or name.startswith(ALLOWED_DIRS):
            continue
        text = path.read_text(encoding="utf-8")
        lines = _appends(ast.parse(text))
        lines += [n for n, line in enumerate(text.splitlines(), 1) if "append_one" in line]
        offenders += [f"{name}:{n}" for n in lines]
    assert offenders == []


def test_no_module_outside_the_projections_writes_a_read_model() -> None:
    offenders = []
    for path in _sources(".py", ".sql"):
        name = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = WRITE.search(line)
            if match:
                offenders.append(f"{name}:{number}: {match.group(0)}")
    assert offenders == []


def test_the_checks_see_what_they_look_for() -> None:
    """Each check finds a write placed where it must not be (so a pass means something)."""
    assert _appends(ast.parse("await self.store.append(s, 0, [e])")) == [1]
    assert _appends(ast.parse("await store.append(s, 0, [e])")) == [1]
    assert _appends(ast.parse("events.append(e)")) == []
    assert WRITE.search("UPDATE webhook_endpoints SET url = $2")
    assert WRITE.search("INSERT INTO {users} (user_id) VALUES ($1)")
    assert not WRITE.search("INSERT INTO webhook_secrets (endpoint_id) VALUES ($1)")
    assert "users" in READ_MODELS and "workers" in READ_MODELS
