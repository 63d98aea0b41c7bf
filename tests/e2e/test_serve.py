"""`helix serve` as a user runs it: a real process, its printed admin key, a clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helix.worker.isolation import PhaseUser
from helix.worker.user_lock import PhaseUserLock
from tests.e2e.processes import (
    HELIX,
    STARTUP_TIMEOUT,
    Server,
    free_port,
    helix_env,
    run_helix,
    stop,
    wait_ready,
)

JWT_SECRET = "helix-serve-jwt-secret-" + "7e3a" * 8


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--port", str(port), env=helix_env(database_url, tmp_path / "data"),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    running = Server(proc, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def default_server(tmp_path: Path) -> AsyncIterator[Server]:
    """`helix serve` as it runs by default: an embedded PostgreSQL in its data dir, the
    in-process worker, and a JWT secret of its own in its environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update(HELIX_DATA_DIR=str(tmp_path / "data"), HELIX_JWT_SECRET=JWT_SECRET)
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE
    )
    running = Server(proc, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        await stop(proc)


async def test_serve_prints_a_one_time_admin_key_serves_the_api_and_stops_cleanly_on_sigterm(
    server: Server, database_url: str, tmp_path: Path
) -> None:
    key = (await server.read_until("admin API key:")).split(":", 1)[1].strip()
    password = (await server.read_until("admin password:")).split(":", 1)[1].strip()
    await server.read_until(f"serving on {server.url}")
    admin = {"Authorization": f"Bearer {key}"}

    async with aiohttp.ClientSession() as session:
        ready = await wait_ready(session, server.url)
        assert ready["sequencer"]["leader"] is True
        async with session.get(f"{server.url}/api/v1/users/me", headers=admin) as resp:
            assert resp.status == 200
            assert (await resp.json())["role"] == "admin"
        first = {"username": "admin", "password": password}
        async with session.post(f"{server.url}/api/v1/auth/login", json=first) as resp:
            assert resp.status == 200  # the printed password signs the first admin in
            assert (await resp.json())["user"]["roles"] == ["admin"]

        # Another command on the same database while the server runs.
        env = helix_env(database_url, tmp_path / "data")
        code, out = await run_helix(env, "users", "create", "bob", "--role", "worker",
                                 "--password-stdin", stdin=b"a long password\n")  # fmt: skip
        assert code == 0, out
        code, bob_key = await run_helix(env, "keys", "create", "--user", "bob", "--name", "ci")
        assert code == 0, bob_key
        assert bob_key.strip().startswith("hx_") and len(bob_key.strip().splitlines()) == 1
        bob = {"X-API-Key": bob_key.strip()}
        async with session.get(f"{server.url}/api/v1/users/me", headers=bob) as resp:
            assert (await resp.json())["username"] == "bob"
        login = {"username": "bob", "password": "a long password"}
        async with session.post(f"{server.url}/api/v1/auth/login", json=login) as resp:
            assert resp.status == 200
        code, out = await run_helix(env, "users", "set-password", "bob",
                                    stdin=b"a longer password\n")  # fmt: skip
        assert code == 0, out
        login = {"username": "bob", "password": "a longer password"}
        async with session.post(f"{server.url}/api/v1/auth/login", json=login) as resp:
            assert resp.status == 200

        # The in-process worker runs a shell phase out of the box.
        job = await _run_shell_project(session, server.url, admin)
        assert job["status"] == "completed", job
        assert job["worker_id"] is not None

    server.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), STARTUP_TIMEOUT) == 0

    # The admin key is printed only on the first start.
    code, out = await run_helix(helix_env(database_url, tmp_path / "data"), "users", "list")
    assert code == 0 and "admin" in out and "bob" in out


async def _run_shell_project(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> dict[str, Any]:
    return await _run_project(
        session, url, headers, [{"name": "hello", "command": ["sh", "-c", "echo hello"]}]
    )


async def _run_project(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    phases: list[dict[str, Any]],
) -> dict[str, Any]:
    body = {"name": "out of the box", "phases": phases}
    async with session.post(f"{url}/api/v1/projects", json=body, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        project_id = (await resp.json())["id"]
    async with session.post(f"{url}/api/v1/projects/{project_id}/ready", headers=headers) as r:
        assert r.status == 200, await r.text()
    async with session.post(f"{url}/api/v1/projects/{project_id}/execute", headers=headers) as r:
        assert r.status == 202, await r.text()
        job_id = (await r.json())["job_id"]
    for _ in range(600):
        async with session.get(f"{url}/api/v1/jobs/{job_id}", headers=headers) as resp:
            job: dict[str, Any] = await resp.json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"the job did not finish: {job}")


async def test_a_users_phase_in_a_default_serve_as_root_cannot_reach_the_servers_secrets(
    default_server: Server, tmp_path: Path, as_root: None, phase_probe: Any
) -> None:
    server = default_server
    admin_key = (await server.read_until("admin API key:")).split(":", 1)[1].strip()
    await server.read_until("as the unprivileged user helix-phase")
    admin = {"Authorization": f"Bearer {admin_key}"}
    data = (tmp_path / "data").resolve()
    pid = server.proc.pid
    phase = {
        "name": "probe",
        "command": phase_probe.command,
        "env": {
            "READ_PROBES": f"/proc/{pid}/environ {data}/pg/PG_VERSION {data}/pg/postgresql.conf",
            "LIST_PROBES": f"{data} {data}/pg",
        },
    }

    async with aiohttp.ClientSession() as session:
        await wait_ready(session, server.url)
        mallory = {"username": "mallory", "password": "a long password", "role": "user"}
        async with session.post(f"{server.url}/api/v1/users", json=mallory, headers=admin) as r:
            assert r.status == 201, await r.text()
        login = {"username": mallory["username"], "password": mallory["password"]}
        async with session.post(f"{server.url}/api/v1/auth/login", json=login) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["token"]
        user = {"Authorization": f"Bearer {token}"}
        job = await _run_project(session, server.url, user, [phase])
        assert job["status"] == "completed", job
        async with session.get(f"{server.url}/api/v1/jobs/{job['id']}/output", headers=user) as r:
            lines = [line["line"] for line in (await r.json())["items"]]

    phase_probe.assert_isolated(
        lines, secrets=[JWT_SECRET, admin_key], declared={"READ_PROBES", "LIST_PROBES"}
    )
    for probe in (f"read /proc/{pid}/environ", f"read {data}/pg/", f"list {data}"):
        found = [line for line in lines if line.startswith(probe)]
        assert found and all("Permission denied" in line for line in found), (probe, lines)


async def test_as_root_serve_refuses_a_phase_user_another_worker_on_the_machine_holds(
    database_url: str, tmp_path: Path, spare_phase_user: PhaseUser
) -> None:
    env = {**helix_env(database_url, tmp_path / "data"), "HELIX_PHASE_USER": spare_phase_user.name}
    lock = PhaseUserLock.take(spare_phase_user)
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--port", str(free_port()), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    finally:
        lock.release()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    out = output.decode()
    assert proc.returncode == 2, out
    assert "the in-process worker cannot run phases" in out
    assert f"the phase user {spare_phase_user.name}" in out and "HELIX_PHASE_USER" in out


async def test_every_command_describes_its_options_in_help(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    code, out = await run_helix(env, "serve", "--help")
    assert code == 0 and "--host" in out and "--port" in out and "HELIX_PORT" in out
    assert "--no-worker" in out
    code, out = await run_helix(env, "worker", "--help")
    assert code == 0 and "--server" in out and "--capabilities" in out and "--workdir" in out
    code, out = await run_helix(env, "users", "create", "--help")
    assert code == 0 and "--role" in out and "--password-stdin" in out
    code, out = await run_helix(env, "keys", "create", "--help")
    assert code == 0 and "--user" in out and "--name" in out


# A documentation address (TEST-NET-1) that exists only on the loopback interface of a network
# namespace of the test's own: a peer outside the loopback range whose traffic never leaves it.
NAMESPACE_ADDRESS = "192.0.2.10"
FETCH_SCRIPT = """
import json, sys, urllib.error, urllib.request
results = []
for url, headers in json.loads(sys.argv[1]):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            results.append([resp.status, resp.read().decode()])
    except urllib.error.HTTPError as exc:
        results.append([exc.code, exc.read().decode()])
print(json.dumps(results))
"""


def _namespaces_available() -> bool:
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(
    not _namespaces_available() or bool(os.environ.get("HELIX_TEST_DATABASE_URL")),
    reason="needs root to make a network namespace, and the embedded server's socket (a "
    "database over TCP is not reachable from a new network namespace)",
)


async def _serve_in_own_namespace(env: dict[str, str], port: int) -> Server:
    setup = f'ip link set lo up && ip addr add {NAMESPACE_ADDRESS}/32 dev lo && exec "$@"'
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--net", "sh", "-c", setup, "sh",
        *HELIX, "serve", "--host", "0.0.0.0", "--port", str(port), "--no-worker",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = Server(proc, f"http://{NAMESPACE_ADDRESS}:{port}")
    await server.read_until("serving on")
    return server


async def _fetch_from(server: Server, *requests: tuple[str, dict[str, str]]) -> list[Any]:
    """GETs from inside the server's network namespace, one (status, body) per request."""
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/proc/{server.proc.pid}/ns/net",
        sys.executable, "-c", FETCH_SCRIPT, json.dumps(requests),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 0
    return [(status, body) for status, body in json.loads(out)]


async def _stop(server: Server) -> None:
    if server.proc.returncode is None:
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.proc.wait(), STARTUP_TIMEOUT)


@needs_namespace
async def test_metrics_are_refused_to_a_peer_outside_loopback_unless_it_holds_the_token(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    outside = f"http://{NAMESPACE_ADDRESS}:{port}/metrics"
    server = await _serve_in_own_namespace(helix_env(database_url, tmp_path / "data"), port)
    try:
        (remote, remote_forwarded, local) = await _fetch_from(
            server,
            (outside, {}),
            (outside, {"X-Forwarded-For": "127.0.0.1"}),
            (f"http://127.0.0.1:{port}/metrics", {}),
        )
    finally:
        await _stop(server)
    for status, body in (remote, remote_forwarded):
        assert status == 403
        error = json.loads(body)["error"]
        assert error["code"] == "FORBIDDEN" and error["details"]["rule"] == "loopback"
        assert "HELIX_METRICS_TOKEN" in error["message"]
    assert local[0] == 200 and "helix_http_requests_total" in local[1]

    env = dict(helix_env(database_url, tmp_path / "data"), HELIX_METRICS_TOKEN="scraper-token")
    server = await _serve_in_own_namespace(env, port)
    try:
        (bare, with_token) = await _fetch_from(
            server, (outside, {}), (outside, {"Authorization": "Bearer scraper-token"})
        )
    finally:
        await _stop(server)
    assert bare[0] == 401 and json.loads(bare[1])["error"]["code"] == "UNAUTHORIZED"
    assert with_token[0] == 200 and "helix_eventstore_head_position" in with_token[1]
