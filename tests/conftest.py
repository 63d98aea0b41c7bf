"""Test fixtures: one embedded PostgreSQL per session, a fresh database per test cloned from a
migrated template (ahead of the test, see tests/support.py FreshDatabases)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic import command

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.database import with_database
from helix.embedded import EmbeddedPostgres
from helix.migrate import alembic_config
from helix.worker.isolation import PhaseUser, phase_user
from helix.worker.sweep import stop_and_kill
from tests.support import TEST_SETTINGS, FreshDatabases, admin_execute, started_node

# The integration tests' shared fixtures, as pytest documents sharing them: a plugin named here.
pytest_plugins = ["tests.integration.fixtures"]

TEMPLATE = "helix_template"


@contextlib.contextmanager
def _embedded_server() -> Iterator[str]:
    """A private embedded server for the session, non-durable; its maintenance URL."""
    with tempfile.TemporaryDirectory(prefix="helix-test-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", durable=False)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


def _migrated_template(url: str) -> str:
    asyncio.run(
        admin_execute(
            url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE}"
        )
    )
    template = with_database(url, TEMPLATE)
    command.upgrade(alembic_config(template), "head")
    return template


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The server's maintenance URL: HELIX_TEST_DATABASE_URL, or a private embedded server."""
    external = os.environ.get("HELIX_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with _embedded_server() as url:
        yield url


@pytest.fixture(scope="session")
def template_url(pg_url: str) -> str:
    return _migrated_template(pg_url)


@pytest.fixture(scope="session")
def fresh_databases(pg_url: str, template_url: str) -> Iterator[FreshDatabases]:
    """Fresh databases for the tests, each cloned while the test before it runs."""
    databases = FreshDatabases(pg_url, TEMPLATE)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
async def database_url(fresh_databases: FreshDatabases) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with fresh_databases.database() as url:
        yield url


@pytest.fixture
def settings() -> Settings:
    return TEST_SETTINGS


@pytest.fixture
async def node(database_url: str, settings: Settings) -> AsyncIterator[LogNode]:
    """Store, head watcher and sequencer on a fresh database."""
    async with started_node(database_url, settings) as log_node:
        yield log_node


def _others_may_run(program: Path) -> bool:
    real = program.resolve()
    return all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


@pytest.fixture(scope="session")
def phase_python() -> str:
    """A Python that phase commands may run. As root, a worker runs phases as an unprivileged
    user, who cannot reach an interpreter that only root can (one under /root, say)."""
    found = [sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    for program in found:
        if program and (os.geteuid() != 0 or _others_may_run(Path(program))):
            return program
    pytest.skip("no Python that an unprivileged user may run")


@pytest.fixture
def as_root() -> None:
    """For tests of what a worker does only as root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("a worker runs phases as another user only when it runs as root")


# A worker kills every process of its phase user after each phase: tests of that run phases as a
# user of their own, so that they kill nothing else (a Helix on the same machine, run as root,
# runs its phases as the default user).
SPARE_PHASE_USER = "helix-phase-test"


@pytest.fixture
def spare_phase_user(as_root: None) -> Iterator[PhaseUser]:
    """A phase user that runs nothing but the test's phases; nothing of it outlives the test."""
    user = phase_user(SPARE_PHASE_USER)
    yield user
    stop_and_kill(user.uid)


class PhaseProbe:
    """A phase command that tries what an attacker's would: who it is, its environment, its
    parent's (the worker's, or the server's for the in-process worker) environment and command
    line, a listing of the workdir, and the files and directories named in its `READ_PROBES`
    and `LIST_PROBES`."""

    script = r"""
echo "id $(id -u) $(id -G)"
env | sed 's/^/env /'
cat /proc/$PPID/environ 2>&1 | tr '\0' '\n' | sed 's/^/parent-environ /'
tr '\0' ' ' < /proc/$PPID/cmdline | sed 's/^/parent-cmdline /'; echo
ls -a "$HELIX_WORKSPACE/.." 2>&1 | sed 's/^/workdir /'
for f in $READ_PROBES; do cat "$f" 2>&1 | sed "s|^|read $f |"; done
for d in $LIST_PROBES; do ls -a "$d" 2>&1 | sed "s|^|list $d |"; done
touch "$HELIX_WORKSPACE/made-by-the-phase" && echo "wrote its workspace"
"""
    # Variables a phase may see: the clean environment, and what its shell sets itself.
    variables = frozenset(
        {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "PWD", "OLDPWD", "SHLVL", "_"}
    )

    @property
    def command(self) -> list[str]:
        return ["sh", "-c", self.script]

    def assert_isolated(self, lines: list[str], *, secrets: list[str], declared: set[str]) -> None:
        """The probe ran as the phase user (no other group) with nothing of its worker's."""
        phase_user = pwd.getpwnam("helix-phase")
        assert f"id {phase_user.pw_uid} {phase_user.pw_gid}" in lines, lines
        text = "\n".join(lines)
        for secret in secrets:
            assert secret not in text
        names = {line[4:].split("=", 1)[0] for line in lines if line.startswith("env ")}
        job = {
            "HELIX_JOB_ID",
            "HELIX_PROJECT_ID",
            "HELIX_PHASE",
            "HELIX_WORKSPACE",
            "HELIX_CONTEXT_FILE",
        }
        # Only when the job has a model and the phase a prompt.
        given = {"HELIX_MODEL", "HELIX_PROMPT"}
        allowed = (
            self.variables | job | given | declared | {n for n in names if n.startswith("LC_")}
        )
        assert names <= allowed, names - allowed
        assert job <= names
        [environ] = [line for line in lines if line.startswith("parent-environ ")]
        assert "Permission denied" in environ
        workdir = [line for line in lines if line.startswith("workdir ")]
        assert len(workdir) == 1 and "Permission denied" in workdir[0], workdir
        assert "wrote its workspace" in lines


@pytest.fixture
def phase_probe() -> PhaseProbe:
    return PhaseProbe()
