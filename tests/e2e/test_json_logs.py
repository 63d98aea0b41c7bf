"""`helix serve` and `helix worker` with HELIX_LOG_FORMAT=json: every log line is a JSON object,
each request has one access line, and no credential the callers used appears in any line."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.processes import HELIX, STARTUP_TIMEOUT, Server, free_port, helix_env, wait_ready

PASSWORD = "correct horse battery staple 42"


def json_lines(stderr: bytes) -> list[dict[str, Any]]:
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    for line in parsed:
        assert {"ts", "level", "logger", "message"} <= set(line), line
    return parsed


def drain(proc: asyncio.subprocess.Process) -> asyncio.Task[bytes]:
    """Its stderr read to the end in the background, and its stdout read and dropped: a pipe
    nobody reads fills, and the process then blocks on its next log line."""
    assert proc.stdout is not None and proc.stderr is not None
    asyncio.get_running_loop().create_task(proc.stdout.read())
    return asyncio.get_running_loop().create_task(proc.stderr.read())


async def stop(proc: asyncio.subprocess.Process, stderr: asyncio.Task[bytes]) -> bytes:
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), STARTUP_TIMEOUT)
    return await asyncio.wait_for(stderr, STARTUP_TIMEOUT)


async def test_json_logs_have_one_access_line_per_request_and_no_secret(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = helix_env(database_url, tmp_path / "data", HELIX_LOG_FORMAT="json")
    proc = await asyncio.create_subprocess_exec(
        *HELIX, "serve", "--no-worker", "--port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = Server(proc, f"http://127.0.0.1:{port}")
    worker_proc: asyncio.subprocess.Process | None = None
    try:
        admin_key = (await server.read_until("admin API key:")).split(":", 1)[1].strip()
        serve_stderr_read = drain(proc)
        admin = {"Authorization": f"Bearer {admin_key}"}
        # request id: route, principal kind (its role, or anonymous), credential, status
        request_ids: dict[str, tuple[str, str, str | None, int]] = {}
        async with aiohttp.ClientSession(server.url) as http:
            await wait_ready(http, server.url)

            async def call(method: str, path: str, route: str, kind: str, **kwargs: Any) -> Any:
                credential = {"admin": "api_key", "user": "token"}.get(kind)
                async with http.request(method, path, **kwargs) as resp:
                    rid = resp.headers["X-Request-ID"]
                    request_ids[rid] = (route, kind, credential, resp.status)
                    body: dict[str, Any] = await resp.json()
                    return body

            user = await call(
                "POST", "/api/v1/users", "/api/v1/users", "admin", headers=admin,
                json={"username": "carol", "password": PASSWORD},
            )  # fmt: skip
            login = await call(
                "POST", "/api/v1/auth/login", "/api/v1/auth/login", "anonymous",
                json={"username": "carol", "password": PASSWORD},
            )  # fmt: skip
            jwt = login["token"]
            await call(
                "GET", f"/api/v1/users/{user['id']}", "/api/v1/users/{user_id}", "user",
                headers={"Authorization": f"Bearer {jwt}"},
            )  # fmt: skip
            await call(
                "GET", "/api/v1/users/me", "/api/v1/users/me", "admin",
                headers={"X-API-Key": admin_key},
            )  # fmt: skip
            minted = await call(
                "POST", "/api/v1/stream-tokens", "/api/v1/stream-tokens", "user",
                headers={"Authorization": f"Bearer {jwt}"},
            )  # fmt: skip
            stream_token = minted["token"]
            async with http.get(f"/api/v1/events/stream?access_token={stream_token}") as resp:
                assert resp.status == 200
                rid = resp.headers["X-Request-ID"]
                request_ids[rid] = ("/api/v1/events/stream", "user", "token", 200)
                await resp.content.readline()
            await call(
                "GET", "/api/v1/users/me", "/api/v1/users/me", "anonymous",
                headers={"Authorization": "Bearer hx_not_a_real_key_at_all"},
            )  # fmt: skip
            worker = await call(
                "POST", "/api/v1/users", "/api/v1/users", "admin", headers=admin,
                json={"username": "runner", "role": "worker"},
            )  # fmt: skip
            created = await call(
                "POST", "/api/v1/auth/api-keys", "/api/v1/auth/api-keys", "admin",
                headers=admin, json={"user_id": worker["id"]},
            )  # fmt: skip
            worker_key = created["key"]

            # The worker logs in the same format, and never its key.
            worker_env = env | {"HELIX_WORKER_KEY": worker_key}
            worker_proc = await asyncio.create_subprocess_exec(
                *HELIX, "--log-level", "INFO", "worker", "--server", server.url,
                "--workdir", str(tmp_path / "ws"), "--claim-wait", "1",
                env=worker_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            worker_stderr_read = drain(worker_proc)

            async def registered() -> None:
                while True:
                    async with http.get("/api/v1/workers", headers=admin) as resp:
                        if (await resp.json())["items"]:
                            return
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(registered(), STARTUP_TIMEOUT)
        worker_stderr = await stop(worker_proc, worker_stderr_read)
        serve_stderr = await stop(proc, serve_stderr_read)
    finally:
        for running in (worker_proc, proc):
            if running is not None and running.returncode is None:
                running.kill()
                await asyncio.wait_for(running.wait(), STARTUP_TIMEOUT)

    secrets = (admin_key, PASSWORD, jwt, stream_token, worker_key, "hx_not_a_real_key_at_all")
    for stderr in (serve_stderr, worker_stderr):
        text = stderr.decode()
        for secret in secrets:
            assert secret not in text
    worker_lines = json_lines(worker_stderr)
    assert any(line["logger"].startswith("helix.worker") for line in worker_lines)

    lines = json_lines(serve_stderr)
    access = [line for line in lines if line["logger"] == "helix.access"]
    by_id = {line["request_id"]: line for line in access}
    assert len(by_id) == len(access)  # one line per request
    for rid, expected in request_ids.items():
        line = by_id[rid]
        found = (line["route"], line["principal_kind"], line["credential"], line["status"])
        assert found == expected, line
        assert line["level"] == "INFO"
        assert isinstance(line["latency_ms"], int | float) and line["latency_ms"] >= 0
        assert (line["principal_id"] is None) == (expected[1] == "anonymous")
    by_route = {line["route"]: line for line in access}
    assert by_route["/api/v1/users/{user_id}"]["path"] == f"/api/v1/users/{user['id']}"
    assert by_route["/api/v1/users/{user_id}"]["principal_id"] == user["id"]
    assert any(line["message"] == "shutting down" for line in lines)
