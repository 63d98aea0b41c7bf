"""The CLI as an operator meets it on a fresh machine: read-only commands that create nothing,
a port already taken, a SIGTERM that stops `helix serve` promptly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
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


async def _line_with(proc: asyncio.subprocess.Process, marker: str) -> str:
    assert proc.stdout is not None
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
        assert raw, f"helix serve ended before printing {marker!r}"
        if marker in raw.decode():
            return raw.decode().strip()


async def _running_job(session: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> Any:
    body = {"name": "long", "phases": [{"name": "wait", "command": ["sleep", "120"]}]}
    async with session.post(f"{url}/api/v1/projects", json=body, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
        project = (await resp.json())["id"]
    async with session.post(f"{url}/api/v1/projects/{project}/ready", headers=admin) as resp:
        assert resp.status == 200, await resp.text()
    async with session.post(f"{url}/api/v1/projects/{project}/execute", headers=admin) as resp:
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
    for _ in range(600):
        async with session.get(f"{url}/api/v1/jobs/{job_id}", headers=admin) as resp:
            job = await resp.json()
        if job["status"] == "running" and job["phases"][0]["status"] == "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"the phase never started: {job}")


async def test_sigterm_stops_serve_promptly_and_its_worker_hands_the_running_job_back(
    database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # Phases as root when run as root: no phase user is taken from other workers here.
    env = _bare_env(
        HELIX_DATABASE_URL=database_url, HELIX_DATA_DIR=str(tmp_path / "data"),
        HELIX_PHASE_USER="root",
    )  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        key = (await _line_with(proc, "admin API key:")).split(":", 1)[1].strip()
        await _line_with(proc, "An in-process worker runs phases")
        admin = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as session:
            job = await _running_job(session, url, admin)
            # Another worker waits in a long-poll claim, as external workers do.
            waiting = asyncio.ensure_future(_long_poll(session, url, admin))
            await asyncio.sleep(0.5)
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), TIMEOUT)
            took = time.monotonic() - began
            print(f"helix serve stopped {took:.2f}s after SIGTERM")
            assert await waiting in (204, None)
        assert code == 0
        assert took < 10.0  # generous: the machine is shared; the aim is well under 5 s
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version",
                f"job-{job['id']}",
            )
        finally:
            await conn.close()
        # Handed back, not left to its lease: the job is queued again for a retry.
        types = [r["type"] for r in rows]
        assert types[-2:] == ["job.stuck", "job.retry_scheduled"], types
        stuck = (
            json.loads(rows[-2]["data"]) if isinstance(rows[-2]["data"], str) else rows[-2]["data"]
        )
        assert stuck["reason"] == "handed back by its worker"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _long_poll(session: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> int | None:
    body = {"hostname": "elsewhere", "capabilities": ["gpu"]}
    async with session.post(f"{url}/api/v1/workers/register", json=body, headers=admin) as resp:
        if resp.status != 201:
            return resp.status
        worker_id = (await resp.json())["worker_id"]
    try:
        async with session.post(
            f"{url}/api/v1/workers/{worker_id}/claim?wait=30", json={}, headers=admin
        ) as resp:
            return resp.status
    except aiohttp.ClientConnectionError:
        return None
