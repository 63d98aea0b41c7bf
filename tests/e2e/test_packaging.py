"""The wheel, as a container installs it with a plain `pip install .`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _git_files(*patterns: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [name for name in listed.stdout.split() if (ROOT / name).exists()]


def test_the_wheel_carries_every_migration_and_the_files_alembic_reads(tmp_path: Path) -> None:
    # Built from the project's own files alone, as in a fresh clone: a checkout's leftovers
    # (an editable install's egg-info) would otherwise fill in what the package data misses.
    source = tmp_path / "source"
    for name in _git_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("helix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {
        f"migrations/versions/{p.name}" for p in (ROOT / "migrations/versions").glob("*.py")
    }
    assert revisions and revisions <= names
    assert {"migrations/env.py", "migrations/script.py.mako"} <= names
    sql = set(_git_files("*.sql"))
    assert sql and sql <= names
