"""The embedded PostgreSQL admits only Helix: no TCP listener, a socket in a directory only its
owner enters, and peer authentication for the users Helix runs as. Real servers, real processes
and, as root, a throwaway operating-system user trying every route in."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from helix.embedded import EmbeddedPostgres, _bin

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating another operating-system user to try from needs root"
)
# What an earlier Helix wrote: trust for everyone, and a TCP listener on the loopback address.
EARLIER_HBA = """local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
"""
EARLIER_SETTINGS = """
# added by helix
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
"""


def _query(url: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def _postmaster(server: EmbeddedPostgres) -> tuple[int, int]:
    """The server's pid and the port it names in postmaster.pid."""
    lines = (server.pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), int(lines[3])


def _tcp_listeners(pid: int) -> list[str]:
    """The local addresses of the TCP sockets the process listens on, read from /proc."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory for data dirs outside pytest's temporary root: every pytest run on the
    machine resets that root to mode 0700, which would shut the cluster's system user out of a
    server under test."""
    with tempfile.TemporaryDirectory(prefix="helix-test-") as tmp:
        yield Path(tmp)


@pytest.fixture
def stranger() -> Iterator[str]:
    """A throwaway local user, neither Helix's nor the cluster's."""
    name = f"helix-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _as(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        user=user,
        group=user,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _psql_as(user: str, host: str, port: int) -> subprocess.CompletedProcess[str]:
    return _as(
        user, _bin("psql"), "-X", "-w", "-h", host, "-p", str(port), "-U", "postgres",
        "-d", "postgres", "-c", "SELECT 1",
    )  # fmt: skip


def _socket_dir(url: str) -> str:
    return str(_query(url, "SHOW unix_socket_directories")[0][0])


def _assert_only_helix_gets_in(server: EmbeddedPostgres, url: str, stranger: str) -> None:
    pid, port = _postmaster(server)
    socket_dir = _socket_dir(url)

    over_tcp = _psql_as(stranger, "127.0.0.1", port)
    assert over_tcp.returncode != 0
    assert "Connection refused" in over_tcp.stderr
    over_socket = _psql_as(stranger, socket_dir, port)
    assert over_socket.returncode != 0
    assert "Permission denied" in over_socket.stderr
    listing = _as(stranger, "ls", str(server.data_dir))
    assert listing.returncode != 0
    assert "Permission denied" in listing.stderr
    # The data dir lets others pass (the phase user reaches its workspaces): what it holds
    # must keep them out on its own, lock files included (an flock on one would stall Helix).
    for name in ("postgres.users", "postgres.start", "pg/PG_VERSION"):
        opened = _as(stranger, "cat", str(server.data_dir / name))
        assert opened.returncode != 0, name
        assert "Permission denied" in opened.stderr, name
    assert _tcp_listeners(pid) == []
    assert _query(url, "SELECT 1")[0][0] == 1


@as_root
def test_another_local_user_gets_no_connection_by_any_route(scratch: Path, stranger: str) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    url = server.start()
    try:
        _assert_only_helix_gets_in(server, url, stranger)
    finally:
        server.stop()


@as_root
def test_a_user_who_reaches_the_socket_is_still_refused_by_peer_authentication(
    scratch: Path, stranger: str
) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    url = server.start()
    try:
        socket_dir = Path(_socket_dir(url))
        _, port = _postmaster(server)
        # Open every door the file system has; what remains is pg_hba.conf.
        socket_dir.chmod(0o711)
        (socket_dir / f".s.PGSQL.{port}").chmod(0o777)
        server.data_dir.chmod(0o711)

        attempt = _psql_as(stranger, str(socket_dir), port)

        assert attempt.returncode != 0
        assert "Peer authentication failed" in attempt.stderr
        rules = _query(url, "SELECT type, auth_method FROM pg_hba_file_rules")
        assert [tuple(r) for r in rules] == [("local", "peer")]
    finally:
        server.stop()


def test_the_server_listens_on_a_private_socket_and_on_no_tcp_port(scratch: Path) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    url = server.start()
    try:
        pid, _ = _postmaster(server)
        assert _query(url, "SHOW listen_addresses")[0][0] == ""
        assert _tcp_listeners(pid) == []
        socket_dir = Path(_socket_dir(url))
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert pwd.getpwuid(info.st_uid).pw_name == server._owner()
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o711
        for entry in server.data_dir.iterdir():
            assert entry.lstat().st_mode & 0o077 == 0, entry
    finally:
        server.stop()


def test_a_data_dir_too_deep_for_a_socket_path_still_works(scratch: Path) -> None:
    deep = scratch.joinpath(*["a-directory-with-a-long-name"] * 5, "data")
    assert len(str(deep)) > 107
    server = EmbeddedPostgres(deep, durable=False)
    url = server.start()
    try:
        socket_dir = Path(_socket_dir(url))
        assert not socket_dir.is_relative_to(deep)
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert (deep / "postgres.socket-dir").read_text().strip() == str(socket_dir)
        assert _query(url, "SHOW listen_addresses")[0][0] == ""
        assert _query(url, "SELECT current_user")[0][0] == "postgres"
    finally:
        assert server.stop()
    assert not socket_dir.exists()


def _make_like_an_earlier_helix(server: EmbeddedPostgres) -> None:
    """Initialise the cluster, then give it the settings an earlier Helix wrote: trust and TCP."""
    server.start()
    server.stop()
    (server.pgdata / "pg_hba.conf").write_text(EARLIER_HBA)
    with open(server.pgdata / "postgresql.conf", "a") as conf:
        conf.write(EARLIER_SETTINGS)
    server.data_dir.chmod(0o755)


def test_a_data_dir_of_an_earlier_helix_is_brought_to_the_private_settings_on_start(
    scratch: Path,
) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    _make_like_an_earlier_helix(server)

    url = server.start()
    try:
        pid, _ = _postmaster(server)
        assert _query(url, "SHOW listen_addresses")[0][0] == ""
        assert _tcp_listeners(pid) == []
        rules = _query(url, "SELECT type, auth_method FROM pg_hba_file_rules")
        assert [tuple(r) for r in rules] == [("local", "peer")]
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o711
        for entry in server.data_dir.iterdir():
            assert entry.lstat().st_mode & 0o077 == 0, entry
    finally:
        server.stop()


@as_root
def test_a_converted_data_dir_admits_no_other_local_user(scratch: Path, stranger: str) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    _make_like_an_earlier_helix(server)

    url = server.start()
    try:
        _assert_only_helix_gets_in(server, url, stranger)
    finally:
        server.stop()


def test_joining_a_server_left_running_with_a_tcp_listener_is_refused(scratch: Path) -> None:
    server = EmbeddedPostgres(scratch / "data", durable=False)
    _make_like_an_earlier_helix(server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = str(server.pgdata / "server.log")
    server._pg_ctl("start", "-w", "-t", "60", "-l", log, "-o", f"-c port={port}")
    try:
        with pytest.raises(RuntimeError, match="TCP listener"):
            server.start()
    finally:
        server._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
