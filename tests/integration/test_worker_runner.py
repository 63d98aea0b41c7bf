"""The worker against a fake Helix server speaking the worker protocol, with real processes."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import pwd
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from helix.cli.worker import run as run_cli
from helix.system_users import as_user
from helix.worker import Worker, WorkerConfig
from helix.worker.isolation import IsolationError, PhaseUser
from helix.worker.reports import MAX_REQUEST_BYTES, batches, output

KEY = "hxk_test_worker_key"
TOKEN = 7
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]


class FakeServer:
    """Answers the worker protocol and records every request it gets, in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.claims: list[dict[str, Any]] = []
        self.cancel_requested = False
        self.lease_valid = True
        self.register_status = 201
        # Called with each reports request's body; a (status, body) answer replaces the 200.
        self.refuse: Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None] = lambda body: (
            None
        )
        self.app = web.Application()
        self.app.router.add_post("/api/v1/workers/register", self._register)
        self.app.router.add_post("/api/v1/workers/heartbeat", self._heartbeat)
        self.app.router.add_post("/api/v1/workers/{worker_id}/claim", self._claim)
        self.app.router.add_post("/api/v1/jobs/{job_id}/reports", self._reports)
        self.app.router.add_get("/api/v1/jobs/{job_id}/context", self._context)
        # The fencing tokens each context request named, in order.
        self.contexts: list[str] = []

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body, dict(request.headers)))
        return body

    async def _register(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.register_status != 201:
            return error(self.register_status, "UNAUTHORIZED", "invalid API key")
        return web.json_response(
            {
                "worker_id": "w-1",
                "credentials": {"token": "wt_secret", "expires_at": "2030-01-01T00:00:00Z"},
                "heartbeat_interval_s": 10.0,
                "lease_s": 30.0,
            },
            status=201,
        )

    async def _heartbeat(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        current = body["current_job"]
        job = None
        if current is not None:
            job = {
                "job_id": current["job_id"],
                "status": "running",
                "cancel_requested": self.cancel_requested,
                "lease_valid": self.lease_valid,
                "lease_expires_at": None,
            }
        return web.json_response({"acknowledged": True, "worker_id": body["worker_id"], "job": job})

    async def _claim(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.claims:
            return web.json_response(self.claims.pop(0))
        await asyncio.sleep(min(float(request.query["wait"]), 0.1))
        return web.Response(status=204)

    async def _context(self, request: web.Request) -> web.Response:
        self.contexts.append(request.query["fencing_token"])
        project = {"id": "p-1", "name": "fake", "description": "", "project_type": "general"}
        return web.json_response({"project": project, "discussion": [], "phases": []})

    async def _reports(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        refused = self.refuse(body)
        if refused is not None:
            status, data = refused
            return web.json_response(data, status=status)
        return web.json_response(
            {
                "job": {"id": request.match_info["job_id"], "status": "running"},
                "lease": {"fencing_token": body["fencing_token"], "expires_at": "2030-01-01"},
                "cancel_requested": False,
            }
        )

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def report_bodies(self) -> list[dict[str, Any]]:
        return [body for path, body, _ in self.requests if path.endswith("/reports")]

    def reports(self) -> list[dict[str, Any]]:
        return [r for body in self.report_bodies() for r in body["reports"]]

    def types(self, *, without_output: bool = True) -> list[str]:
        return [
            r["type"]
            for r in self.reports()
            if not (without_output and r["type"] in ("output", "progress", "phase_resources"))
        ]

    def output(self, phase: str, stream: str) -> list[str]:
        return [
            line
            for r in self.reports()
            if r["type"] == "output" and r["phase"] == phase and r["stream"] == stream
            for line in r["lines"]
        ]


def error(status: int, code: str, message: str, **details: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}, "request_id": "r"}
    return web.json_response(body, status=status)


def conflict(reason: str) -> dict[str, Any]:
    return {
        "error": {"code": "CONFLICT", "message": reason, "details": {"reason": reason}},
        "request_id": "r",
    }


def phase(name: str, command: list[str] | None, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "ordinal": 0,
        "status": "pending",
        "command": command,
        "timeout_s": None,
        "capabilities": ["shell"],
        "env": {},
        **fields,
    }


def claim(*phases: dict[str, Any], job_id: str = "job-1") -> dict[str, Any]:
    return {
        "job": {
            "id": job_id,
            "project_id": "proj-1",
            "status": "running",
            "attempt": 1,
            "max_attempts": 3,
            "model": None,
        },
        "phases": [{**p, "ordinal": i} for i, p in enumerate(phases)],
        "lease": {"fencing_token": TOKEN, "expires_at": "2030-01-01T00:00:00Z", "lease_s": 30.0},
    }


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> tuple[FakeServer, str]:
    server = FakeServer()
    running = await aiohttp_server(server.app)
    return server, str(running.make_url("")).rstrip("/")


def config(url: str, tmp_path: Path, **changes: Any) -> WorkerConfig:
    options: dict[str, Any] = {
        "server": url,
        "key": KEY,
        "name": "test-worker",
        "workdir": tmp_path / "workspaces",
        "flush_interval": 0.05,
        "heartbeat_interval": 0.1,
        "claim_wait": 1,
        "kill_grace": 0.5,
        "once": True,
        **changes,
    }
    return WorkerConfig(**options)


async def run_once(url: str, tmp_path: Path, **changes: Any) -> Worker:
    worker = Worker(config(url, tmp_path, **changes))
    await worker.start()
    try:
        await asyncio.wait_for(worker.wait(), 10)
    finally:
        await worker.stop()
    return worker


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the condition was not met in time"
        await asyncio.sleep(0.02)


def process_is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def test_a_two_phase_job_is_reported_in_order_under_its_fencing_token(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(
        claim(
            phase("plan", sh("exit 9"), status="completed"),
            phase(
                "build",
                sh('echo building; echo made > out.txt; echo "$HELIX_PHASE $GREETING"'),
                env={"GREETING": "hi"},
            ),
            phase("test", sh("echo testing; echo warn >&2; cat out.txt")),
        )
    )

    await run_once(url, tmp_path)

    assert server.types() == [
        "phase_started",
        "file",
        "phase_completed",
        "phase_started",
        "phase_completed",
        "job_completed",
    ]
    reports = server.reports()
    assert [r["phase"] for r in reports if r["type"] == "phase_started"] == ["build", "test"]
    assert all(body["fencing_token"] == TOKEN for body in server.report_bodies())
    assert server.output("build", "stdout") == ["building", "build hi"]
    assert server.output("test", "stdout") == ["testing", "made"]
    assert server.output("test", "stderr") == ["warn"]
    files = [r for r in reports if r["type"] == "file"]
    assert files == [
        {
            "type": "file",
            "phase": "build",
            "path": "out.txt",
            "size": 5,
            "sha256": hashlib.sha256(b"made\n").hexdigest(),
            "change": "created",
        }
    ]
    # Each phase read its context under the claim's token first.
    assert server.contexts == [str(TOKEN), str(TOKEN)]
    # Each phase's output is reported after it started and before it completed.
    build_done = next(i for i, r in enumerate(reports) if r["type"] == "phase_completed")
    build_output = [i for i, r in enumerate(reports) if r.get("phase") == "build"]
    assert max(build_output) == build_done
    assert (tmp_path / "workspaces" / "proj-1" / "out.txt").read_text() == "made\n"
    assert all(h["Authorization"] == f"Bearer {KEY}" for _, _, h in server.requests)


# Reads and writes 8 MB through a file, holds 64 MB in memory for a sample to see (sort keeps
# its one line while its input stays open), spins the CPU, then idles while heartbeats report.
HEAVY = """
head -c 8000000 /dev/zero > big && cat big > /dev/null
(head -c 64000000 /dev/zero; sleep 1.5) | sort > /dev/null
i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done
sleep 1
"""
FIGURES = ("cpu_s", "max_rss_bytes", "read_bytes", "write_bytes")


async def test_a_phase_s_resource_usage_is_reported_while_it_runs_and_at_its_end(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("build", sh(HEAVY))))

    await run_once(url, tmp_path)

    assert server.types() == ["phase_started", "file", "phase_completed", "job_completed"]
    reports = server.reports()
    used = [(i, r) for i, r in enumerate(reports) if r["type"] == "phase_resources"]
    assert all(r["phase"] == "build" and set(r) == {"type", "phase", *FIGURES} for _, r in used)
    *during, (last_at, last) = used
    # Sampled while the phase ran and reported at heartbeats, each report only when it changed.
    assert during, "no report while the phase ran"
    assert all(reports[i + 1]["type"] != "phase_completed" for i, _ in during)
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(during))
    # The last comes with the phase's end, in the request that completes it.
    assert reports[last_at + 1]["type"] == "phase_completed"
    body = next(b for b in server.report_bodies() if last in b["reports"])
    assert {"type": "phase_completed", "phase": "build", "exit_code": 0} in body["reports"]
    # Every figure only grows, and the end holds what the phase's processes did.
    for figure in FIGURES:
        values = [r[figure] for _, r in used]
        assert values == sorted(values), figure
    assert last["cpu_s"] >= 0.1
    assert last["max_rss_bytes"] >= 64_000_000
    assert last["read_bytes"] >= 8_000_000 + 64_000_000  # the file, then the pipe into sort
    assert last["write_bytes"] >= 8_000_000 + 64_000_000


async def test_a_failing_phase_fails_the_job_and_the_next_phase_never_starts(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(
        claim(
            phase("build", sh("echo one >&2; echo boom >&2; exit 3")),
            phase("deploy", sh("echo deploying")),
        )
    )

    await run_once(url, tmp_path, stderr_tail=1)

    assert server.types() == ["phase_started", "phase_failed", "job_failed"]
    failed, job_failed = server.reports()[-2:]
    assert failed == {
        "type": "phase_failed",
        "phase": "build",
        "exit_code": 3,
        "error": "exited with code 3",
        "stderr_tail": ["boom"],
    }
    assert "build" in job_failed["error"]
    assert server.output("build", "stderr") == ["one", "boom"]


async def test_a_timed_out_phase_is_reported_failed_with_its_timeout(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("slow", sh("exec sleep 60"), timeout_s=0.3)))

    await run_once(url, tmp_path)

    assert server.types() == ["phase_started", "phase_failed", "job_failed"]
    assert server.reports()[-2]["error"] == "timed out after 0.3 s"


async def test_a_phase_without_a_command_fails_instead_of_being_skipped(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("review", None), phase("build", sh("true"))))

    await run_once(url, tmp_path)

    assert server.types() == ["phase_started", "phase_failed", "job_failed"]
    failed = server.reports()[1]
    assert failed["phase"] == "review" and failed["exit_code"] is None
    assert "no command" in failed["error"]


async def test_a_conflict_on_a_report_abandons_the_job_kills_its_process_and_claims_again(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("run", sh("echo $$; exec sleep 60"))))
    server.refuse = lambda body: (
        (409, conflict("stale_fencing_token"))
        if any(r["type"] == "output" for r in body["reports"])
        else None
    )
    worker = Worker(config(url, tmp_path, once=False))
    await worker.start()
    try:
        await eventually(lambda: any(r["type"] == "output" for r in server.reports()))
        pid = int(server.output("run", "stdout")[0])
        refused_at = len(server.requests)
        await eventually(lambda: "/api/v1/workers/w-1/claim" in server.paths()[refused_at:])
        await eventually(lambda: process_is_gone(pid), within=2)
    finally:
        await worker.stop()

    assert server.types()[-1] == "phase_started"
    assert server.reports()[-1]["type"] == "output"  # the refused one; nothing after it


async def test_a_heartbeat_saying_the_lease_is_lost_kills_the_process_and_reports_nothing(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("run", sh("echo $$; exec sleep 60"))))

    worker = Worker(config(url, tmp_path))
    await worker.start()
    try:
        await eventually(lambda: bool(server.output("run", "stdout")))
        pid = int(server.output("run", "stdout")[0])
        reported = len(server.reports())
        server.lease_valid = False
        await asyncio.wait_for(worker.wait(), 5)
    finally:
        await worker.stop()

    assert process_is_gone(pid)
    assert len(server.reports()) == reported


async def test_a_cancel_seen_in_a_heartbeat_stops_the_process_and_is_acknowledged(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(
        claim(phase("run", sh("echo $$; exec sleep 60")), phase("after", sh("echo never")))
    )
    worker = Worker(config(url, tmp_path, kill_grace=5))
    await worker.start()
    try:
        await eventually(lambda: bool(server.output("run", "stdout")))
        pid = int(server.output("run", "stdout")[0])
        server.cancel_requested = True
        cancelled_at = time.monotonic()
        await asyncio.wait_for(worker.wait(), 5)
    finally:
        await worker.stop()

    assert time.monotonic() - cancelled_at < 3
    assert process_is_gone(pid)
    assert server.types() == ["phase_started", "cancel_acknowledged"]
    heartbeats = [body for path, body, _ in server.requests if path.endswith("/heartbeat")]
    assert {"job_id": "job-1", "fencing_token": TOKEN} in [h["current_job"] for h in heartbeats]


async def test_a_cancel_refused_at_phase_start_is_acknowledged_without_running_it(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("build", sh("touch ran"))))
    server.refuse = lambda body: (
        (409, conflict("cancel_requested"))
        if body["reports"][0]["type"] == "phase_started"
        else None
    )

    await run_once(url, tmp_path)

    assert server.types() == ["phase_started", "cancel_acknowledged"]
    assert not (tmp_path / "workspaces" / "proj-1" / "ran").exists()


async def test_stopping_the_worker_ends_the_phase_without_failing_the_job(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("run", sh("echo $$; exec sleep 60"))))
    worker = Worker(config(url, tmp_path))
    await worker.start()
    await eventually(lambda: bool(server.output("run", "stdout")))
    pid = int(server.output("run", "stdout")[0])

    await asyncio.wait_for(worker.stop(), 3)

    assert process_is_gone(pid)
    assert server.types() == ["phase_started"]


async def test_a_report_that_failed_in_transit_is_retried_under_the_same_idempotency_key(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    server.claims.append(claim(phase("build", sh("true"))))
    failures = iter([(503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}})])
    server.refuse = lambda body: next(failures, None)

    await run_once(url, tmp_path)

    sent = [(b, h) for p, b, h in server.requests if p.endswith("/reports")]
    assert sent[0][0] == sent[1][0]
    assert sent[0][1]["Idempotency-Key"] == sent[1][1]["Idempotency-Key"]
    assert server.types() == ["phase_started", "phase_started", "phase_completed", "job_completed"]


async def test_the_phase_env_has_the_job_and_not_the_worker_s_key(
    fake: tuple[FakeServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = fake
    monkeypatch.setenv("HELIX_WORKER_KEY", KEY)
    monkeypatch.setenv("SOME_TOOL_TOKEN", KEY)
    server.claims.append(claim(phase("env", ["env"])))

    await run_once(url, tmp_path)

    env = dict(line.split("=", 1) for line in server.output("env", "stdout") if "=" in line)
    assert env["HELIX_JOB_ID"] == "job-1"
    assert env["HELIX_PROJECT_ID"] == "proj-1"
    assert env["HELIX_PHASE"] == "env"
    assert env["HELIX_WORKSPACE"] == str((tmp_path / "workspaces" / "proj-1").resolve())
    assert KEY not in env.values()
    assert "wt_secret" not in env.values()


async def test_the_command_exits_non_zero_when_the_server_refuses_the_key(
    fake: tuple[FakeServer, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, url = fake
    server.register_status = 401

    status = await asyncio.wait_for(run_cli(config(url, tmp_path)), 5)

    assert status == 1
    assert "refused the worker's key" in capsys.readouterr().err
    assert server.paths() == ["/api/v1/workers/register"]


async def test_an_idle_worker_long_polls_without_a_hot_loop(
    fake: tuple[FakeServer, str], tmp_path: Path
) -> None:
    server, url = fake
    worker = Worker(config(url, tmp_path, once=False, claim_wait=0))
    await worker.start()
    await asyncio.sleep(1.5)
    await asyncio.wait_for(worker.stop(), 3)

    claims = [p for p in server.paths() if p.endswith("/claim")]
    assert 1 <= len(claims) <= 3


async def test_as_root_a_second_worker_for_the_same_phase_user_is_refused_until_the_first_stops(
    fake: tuple[FakeServer, str], tmp_path: Path, spare_phase_user: PhaseUser
) -> None:
    _, url = fake
    first = Worker(config(url, tmp_path, once=False, phase_user=spare_phase_user.name))
    second = Worker(config(url, tmp_path / "second", once=False, phase_user=spare_phase_user.name))
    await first.start()
    try:
        with pytest.raises(IsolationError) as refused:
            await second.start()
        message = str(refused.value)
        assert f"the phase user {spare_phase_user.name} (uid {spare_phase_user.uid})" in message
        assert f"another worker on this machine (process {os.getpid()})" in message
        assert "HELIX_PHASE_USER" in message and "--phase-user" in message

        # `helix worker` started beside it, as another process, is refused the same way.
        env = {"PATH": os.environ["PATH"], "HELIX_WORKER_KEY": KEY}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "helix.cli", "worker", "--server", url,
            "--workdir", str(tmp_path / "cli"), "--phase-user", spare_phase_user.name,
            env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        _, err = await asyncio.wait_for(cli.communicate(), 30)
        assert cli.returncode == 2, err
        assert b"already runs the phases of another worker" in err
    finally:
        await first.stop()

    await second.start()
    await asyncio.wait_for(second.stop(), 5)


async def test_as_root_a_worker_taking_its_phase_user_ends_what_a_worker_before_it_left(
    fake: tuple[FakeServer, str], tmp_path: Path, spare_phase_user: PhaseUser
) -> None:
    _, url = fake
    left = await asyncio.create_subprocess_exec(
        "sleep", "300", cwd="/", start_new_session=True,
        **as_user(pwd.getpwuid(spare_phase_user.uid)),
    )  # fmt: skip
    worker = Worker(config(url, tmp_path, once=False, phase_user=spare_phase_user.name))
    try:
        await worker.start()
        await asyncio.wait_for(worker.stop(), 5)

        assert await asyncio.wait_for(left.wait(), 5) == -signal.SIGKILL
    finally:
        if left.returncode is None:
            left.kill()
            await left.wait()


def test_reports_are_packed_into_requests_within_the_server_s_limits() -> None:
    many = [{"type": "progress", "percent": 1}] * 2500
    assert [len(b) for b in batches(many)] == [1000, 1000, 500]

    wide = output("build", "stdout", ["x" * 16_384] * 1000)
    packed = batches([wide, {"type": "phase_completed", "phase": "build", "exit_code": 0}])
    assert all(len(json.dumps(b)) < MAX_REQUEST_BYTES for b in packed)
    lines = [line for b in packed for r in b if r["type"] == "output" for line in r["lines"]]
    assert lines == wide["lines"]
    assert packed[-1][-1]["type"] == "phase_completed"
