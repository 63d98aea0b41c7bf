"""Helix's commands as real processes, for the end-to-end tests: a command run to its end, a
`helix serve` whose output is read line by line, and waiting for a node to be ready."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

# One way to find a free port for a server of a test, re-exported for the e2e tests.
from tests.integration.webhooks.webhook_support import free_port as free_port

HELIX = [sys.executable, "-m", "helix.cli"]
STARTUP_TIMEOUT = 60.0


def helix_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its `HELIX_*` settings, on `database_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update(HELIX_DATABASE_URL=database_url, HELIX_DATA_DIR=str(data_dir), **extra)
    return env


async def run_helix(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str]:
    """Run `helix ARGS` to its end: its exit status, and its stdout then its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *HELIX, *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), STARTUP_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


class Server:
    """A running Helix process whose stdout is a pipe, and the URL it serves on."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.lines: list[str] = []

    async def read_until(self, marker: str) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), STARTUP_TIMEOUT)
            if not raw:
                raise AssertionError(f"helix serve ended before printing {marker!r}: {self.lines}")
            line = raw.decode().strip()
            self.lines.append(line)
            if marker in line:
                return line


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, as a service manager stops it, then SIGKILL if it does not end in time."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STARTUP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def wait_ready(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The node's `/readyz` body once it answers 200."""
    for _ in range(3000):
        try:
            async with session.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    body: dict[str, Any] = await resp.json()
                    return body
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"{url} never became ready")
