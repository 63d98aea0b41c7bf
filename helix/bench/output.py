"""`helix bench output`: phase output end to end, from a phase's process into the log.

A project with one phase running `seq 1 N` is executed on an API served by this process and run
by the reference worker (the in-process worker `helix serve` runs, over loopback HTTP); the
clock runs from the execute request to the job's completion, when every line is in the log and
in the output read model. Beside it, the same command run with its output read and discarded:
what the phase costs on its own.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from helix.api.app import create_app
from helix.auth.accounts import Accounts
from helix.bootstrap import LogNode
from helix.cli.local_worker import LocalWorker
from helix.config import Settings
from helix.domain.user import Role
from helix.logs import ACCESS_LOGGER
from helix.services import system_caller
from projections import output

BENCH_CALLER = attrs.evolve(system_caller("bench"), actor="bench", source="helix bench output")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


async def bare_rate(argv: list[str], lines: int) -> float:
    """Lines/s of the command itself, its output read and dropped."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while await proc.stdout.read(1 << 16):
        pass
    await proc.wait()
    return lines / (time.perf_counter() - started)


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    body = await response.json()
    if response.status != status:
        raise RuntimeError(f"{response.method} {response.url.path}: {response.status} {body}")
    return body


async def helix_rate(
    node: LogNode, base: str, key: str, argv: list[str], lines: int
) -> tuple[float, int]:
    """(lines/s from execute to the job's completion, lines in the read model)."""
    headers = {"Authorization": f"Bearer {key}"}
    phases = [{"name": "print", "command": argv}]
    async with aiohttp.ClientSession(base, headers=headers) as http:
        name = f"output-{uuid.uuid4().hex[:8]}"
        async with http.post("/api/v1/projects", json={"name": name, "phases": phases}) as r:
            project = await _json(r, 201)
        async with http.post(f"/api/v1/projects/{project['id']}/ready") as r:
            await _json(r, 200)
        started = time.perf_counter()
        async with http.post(f"/api/v1/projects/{project['id']}/execute") as r:
            job_id = (await _json(r, 202))["job_id"]
        while True:
            async with http.get(f"/api/v1/jobs/{job_id}") as r:
                status = (await _json(r, 200))["status"]
            if status in TERMINAL:
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    if status != "completed":
        raise RuntimeError(f"the job ended {status}")
    assert node.pool is not None
    async with node.pool.acquire() as conn:
        stored = await output.count(conn, uuid.UUID(job_id), None)
    return lines / elapsed, stored


async def run(url: str, settings: Settings, *, lines: int, runs: int) -> int:
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    argv = ["seq", "1", str(lines)]
    with tempfile.TemporaryDirectory(prefix="helix-bench-output-") as data_dir:
        settings = attrs.evolve(settings, rate_limit_per_minute=0, data_dir=Path(data_dir))
        node = LogNode(url, settings)
        await node.start()
        runner: web.AppRunner | None = None
        worker: LocalWorker | None = None
        try:
            accounts = Accounts(node.store)
            user = await accounts.create_user("bench", Role.ADMIN, None, caller=BENCH_CALLER)
            _, key = await accounts.create_key(user.user_id, "bench", caller=BENCH_CALLER)
            runner = web.AppRunner(create_app(node, settings), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            worker = LocalWorker(accounts, settings, base)
            await worker.start()
            bare = await bare_rate(argv, lines)
            print(f"`{' '.join(argv)}`, its output read and dropped: {bare:.0f} lines/s")
            print(f"{'run':>3}  {'helix lines/s':>13}  {'seconds':>8}  {'lines in the log':>16}")
            for n in range(1, runs + 1):
                rate, stored = await helix_rate(node, base, key, argv, lines)
                print(f"{n:>3}  {rate:>13.0f}  {lines / rate:>8.2f}  {stored:>16}")
                if stored != lines:
                    raise RuntimeError(f"{stored} of {lines} lines reached the log")
        finally:
            if worker is not None:
                await worker.stop()
            if runner is not None:
                await runner.cleanup()
            await node.stop()
    return 0
