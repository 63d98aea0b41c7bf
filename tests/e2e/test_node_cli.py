"""The CLI as an operator meets it on a fresh machine: read-only commands that create nothing,
a port already taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HELIX = [sys.executable, "-m", "helix.cli"]
TIMEOUT = 120.0


def _bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "command",
    [["audit", "verify"], ["projections", "status"], ["events", "export"]],
    ids=lambda c: " ".join(c),
)
def test_a_read_only_command_without_a_database_creates_no_data_dir_and_says_where_it_looked(
    command: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [*HELIX, *command], cwd=tmp_path, env=_bare_env(), capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str((tmp_path / ".helix" / "pg").resolve()) in lines[0]
    assert "HELIX_DATABASE_URL" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_serve_on_a_port_in_use_says_so_in_one_line(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _bare_env(HELIX_DATABASE_URL=database_url, HELIX_DATA_DIR=str(tmp_path / "data"))
        done = subprocess.run(
            [*HELIX, "serve", "--port", str(port), "--no-worker"], env=env, capture_output=True,
            text=True, timeout=TIMEOUT,
        )  # fmt: skip
    assert done.returncode == 1, done
    assert done.stderr.strip() == f"helix: port {port} on 127.0.0.1 is in use", done.stderr
    assert "Traceback" not in done.stdout
