"""`helix worker` as a separate process against a real server: phases run as subprocesses,
their output, files and exit status reach the read models and the log; timeouts, a killed
worker and cancellation behave."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import signal
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.services.reaper import LeaseReaper
from tests.support import group_of

Client = TestClient[Any, Any]
FAST = {
    "worker_lease_s": 2.0,
    "worker_heartbeat_interval": 0.3,
    "job_retry_base_s": 0.05,
    "job_retry_cap_s": 0.05,
    "reaper_interval": 0.2,
}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client(**FAST)


@pytest.fixture
async def reaper(node: LogNode, settings: Settings) -> AsyncIterator[LeaseReaper]:
    running = LeaseReaper(node.store, attrs.evolve(settings, **FAST))
    await running.start()
    yield running
    await running.stop()


class Workers:
    """Starts `helix worker` processes; kills whatever is left at the end."""

    def __init__(self, client: Client, key: str, workdir: Path, logs: Path) -> None:
        self.url = str(client.make_url("/"))
        self.key = key
        self.workdir = workdir
        self.logs = logs
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *options: str, **extra_env: str) -> asyncio.subprocess.Process:
        """A worker with the tests' quick options, then `options` (which override them)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
        env.update(extra_env, HELIX_WORKER_KEY=self.key)
        log = (self.logs / f"worker{len(self.procs)}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "helix.cli", "worker", "--server", self.url,
            "--capabilities", "shell", "--workdir", str(self.workdir), "--flush-interval", "0.1",
            "--lines-per-event", "2", "--claim-wait", "2", "--kill-grace", "1", *options,
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def workers(
    client: Client, worker: Any, reaper: LeaseReaper, tmp_path: Path
) -> AsyncIterator[Workers]:
    started = Workers(client, worker.key, tmp_path / "workspaces", tmp_path)
    yield started
    await started.close()


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def execute(client: Client, who: Any, phases: list[dict[str, Any]]) -> tuple[str, str]:
    body = {"name": "e2e", "phases": phases}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=who.headers), 201)
    await ok(await client.post(f"/api/v1/projects/{project['id']}/ready", headers=who.headers))
    run = await ok(
        await client.post(f"/api/v1/projects/{project['id']}/execute", headers=who.headers), 202
    )
    return str(project["id"]), str(run["job_id"])


async def job_of(client: Client, who: Any, job_id: str) -> Any:
    return await ok(await client.get(f"/api/v1/jobs/{job_id}", headers=who.headers))


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.1)


async def finished(client: Client, who: Any, job_id: str, timeout: float = 60) -> Any:
    async def done() -> Any:
        shown = await job_of(client, who, job_id)
        return shown if shown["status"] in TERMINAL else None

    return await until(done, timeout)


async def lines_of(client: Client, who: Any, job_id: str) -> list[str]:
    body = await ok(await client.get(f"/api/v1/jobs/{job_id}/output", headers=who.headers))
    return [line["line"] for line in body["items"]]


async def events_of(client: Client, admin: Any, job_id: str) -> list[dict[str, Any]]:
    url = f"/api/v1/events?stream_id=job-{job_id}&limit=1000"
    return list((await ok(await client.get(url, headers=admin.headers)))["items"])


def alive(pid: int) -> bool:
    """Whether the process still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_project_runs_end_to_end_with_its_output_files_and_history(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    py = phase_python
    greet = "import sys; print('hello'); print('world'); print('oops', file=sys.stderr)"
    write = "open('result.txt', 'w').write('42\\n'); print('wrote')"
    project_id, job_id = await execute(
        client, user,
        [{"name": "greet", "command": [py, "-c", greet]},
         {"name": "write", "command": [py, "-c", write], "timeout_s": 60}],
    )  # fmt: skip
    await workers.start()
    shown = await finished(client, user, job_id)

    assert shown["status"] == "completed", shown
    assert [(p["name"], p["status"], p["exit_code"]) for p in shown["phases"]] == [
        ("greet", "completed", 0),
        ("write", "completed", 0),
    ]
    assert sorted(await lines_of(client, user, job_id)) == ["hello", "oops", "world", "wrote"]
    [written] = shown["phases"][1]["files"]
    assert written == {
        "path": "result.txt",
        "size": 3,
        "sha256": hashlib.sha256(b"42\n").hexdigest(),
        "change": "created",
    }
    assert shown["phases"][0]["files"] == []
    types = [e["type"] for e in await events_of(client, admin, job_id)]
    for expected in ("job.claimed", "job.phase_started", "job.phase_output", "job.phase_file",
                     "job.phase_completed", "job.completed"):  # fmt: skip
        assert expected in types, types
    assert types.count("job.phase_started") == 2 and types[-1] == "job.completed"
    project = await ok(await client.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "completed"
    listed = await ok(await client.get("/api/v1/workers", headers=admin.headers))
    assert [w["capabilities"] for w in listed["items"]] == [["shell"]]
    assert shown["worker_id"] == listed["items"][0]["id"]


async def test_a_phase_of_100000_lines_reaches_the_log_complete_in_order_and_numbered(
    client: Client, node: LogNode, workers: Workers, user: Any
) -> None:
    total = 100_000
    _, job_id = await execute(client, user, [{"name": "count", "command": ["seq", str(total)]}])
    await workers.start("--lines-per-event", "100", "--flush-interval", "0.5")
    shown = await finished(client, user, job_id, timeout=120)

    assert shown["status"] == "completed", shown
    output = [
        e for e in await node.store.read_stream(f"job-{job_id}") if e.type == "job.phase_output"
    ]
    lines = [line for e in output for line in e.data["lines"]]
    assert lines == [str(n) for n in range(1, total + 1)]
    # Each event numbers its first line right after the previous event's last.
    firsts = [e.data["first_line_no"] for e in output]
    sizes = [len(e.data["lines"]) for e in output]
    assert firsts == [1 + sum(sizes[:i]) for i in range(len(sizes))]
    assert {(e.data["attempt"], e.data["stream"]) for e in output} == {(1, "stdout")}
    # The read model holds the same lines, densely numbered in the order written.
    page = await ok(
        await client.get(
            f"/api/v1/jobs/{job_id}/output", params={"after": str(total - 3)}, headers=user.headers
        )
    )
    assert [(x["line_no"], x["line"]) for x in page["items"]] == [
        (n, str(n)) for n in range(total - 2, total + 1)
    ]


async def test_a_failing_phase_fails_the_job_and_a_phase_past_its_timeout_is_killed(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    py = phase_python
    fail = (
        "import sys; print('about to fail'); "
        "print('bad thing happened', file=sys.stderr); sys.exit(1)"
    )
    _, failing = await execute(
        client, user,
        [{"name": "check", "command": [py, "-c", fail]}, {"name": "never", "command": ["true"]}],
    )  # fmt: skip
    _, slow = await execute(
        client, user, [{"name": "sleep", "command": [py, "-c", "import time; time.sleep(60)"],
                        "timeout_s": 1}],
    )  # fmt: skip
    await workers.start()

    shown = await finished(client, user, failing)
    assert shown["status"] == "failed"
    assert [(p["status"], p["exit_code"]) for p in shown["phases"]] == [
        ("failed", 1),
        ("skipped", None),
    ]
    assert "check" in shown["error"]
    [failed] = [
        e for e in await events_of(client, admin, failing) if e["type"] == "job.phase_failed"
    ]
    assert failed["data"]["exit_code"] == 1
    assert "bad thing happened" in failed["data"]["stderr_tail"]

    timed_out = await finished(client, user, slow)
    assert timed_out["status"] == "failed"
    [phase] = timed_out["phases"]
    assert phase["status"] == "failed"
    assert "timed out" in phase["error"]
    assert phase["duration_s"] < 30


KILLABLE = """
import os, pathlib, sys, time
marker = pathlib.Path('first-attempt.pid')
if marker.exists():
    print('second attempt', flush=True)
    sys.exit(0)
marker.write_text(str(os.getpid()))
print('first attempt', flush=True)
time.sleep(60)
"""


async def test_a_killed_workers_job_is_retried_on_another_and_its_late_reports_are_refused(
    client: Client,
    workers: Workers,
    user: Any,
    admin: Any,
    worker: Any,
    tmp_path: Path,
    phase_python: str,
) -> None:
    project_id, job_id = await execute(
        client, user, [{"name": "work", "command": [phase_python, "-c", KILLABLE]}]
    )
    first = await workers.start()
    await until(lambda: _has_line(client, user, job_id, "first attempt"))
    first.send_signal(signal.SIGKILL)
    await first.wait()
    # The phase dies with its worker, before the retry runs in the same workspace.
    orphan = int((tmp_path / "workspaces" / project_id / "first-attempt.pid").read_text())
    await until(lambda: _all_gone([orphan]), timeout=10)

    await workers.start()
    shown = await finished(client, user, job_id)
    assert (shown["status"], shown["attempt"]) == ("completed", 2)
    body = await ok(await client.get(f"/api/v1/jobs/{job_id}/output", headers=user.headers))
    assert [(line["attempt"], line["line"]) for line in body["items"]] == [
        (1, "first attempt"),
        (2, "second attempt"),
    ]
    assert [(line["attempt"], line["line"]) for line in shown["output_tail"]] == [
        (1, "first attempt"),
        (2, "second attempt"),
    ]
    history = await events_of(client, admin, job_id)
    outputs = [e for e in history if e["type"] == "job.phase_output"]
    assert [(e["data"]["attempt"], e["data"]["lines"]) for e in outputs] == [
        (1, ["first attempt"]),
        (2, ["second attempt"]),
    ]
    types = [e["type"] for e in history]
    assert "job.stuck" in types and "job.retry_scheduled" in types
    claims = [e["data"] for e in history if e["type"] == "job.claimed"]
    assert len(claims) == 2 and claims[0]["worker_id"] != claims[1]["worker_id"]

    late = {
        "fencing_token": claims[0]["fencing_token"],
        "reports": [{"type": "output", "phase": "work", "stream": "stdout", "lines": ["late"]}],
    }
    resp = await client.post(f"/api/v1/jobs/{job_id}/reports", json=late, headers=worker.headers)
    assert resp.status == 409, await resp.text()
    assert len(await events_of(client, admin, job_id)) == len(history)


# A child in the background and one in the foreground, in the phase's process group; with
# ESCAPE, one more that leaves the group for a session of its own.
GRANDCHILDREN = "sleep 300 & {escape}echo group $$; sleep 300"
ESCAPE = (
    "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & sleep 0.2; "
    "echo escaped $(cat escaped.pid); "
)


@pytest.mark.parametrize("isolated", [False, True], ids=["own-user", "phase-user"])
async def test_every_process_of_a_phase_dies_with_its_worker_killed_by_sigkill(
    client: Client,
    workers: Workers,
    user: Any,
    isolated: bool,
    request: pytest.FixtureRequest,
) -> None:
    if isolated:
        # As root, phases run as a user of their own, whose every process the guard ends: what
        # left the group too.
        phase_user = request.getfixturevalue("spare_phase_user").name
    else:
        # Phases run as the worker's own user (as root, root: nothing to switch to).
        phase_user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    script = GRANDCHILDREN.format(escape=ESCAPE if isolated else "")
    _, job_id = await execute(client, user, [{"name": "spawn", "command": ["sh", "-c", script]}])
    worker = await workers.start(HELIX_PHASE_USER=phase_user)
    prefixes = ("group ", "escaped ") if isolated else ("group ",)
    lines = await until(lambda: _lines_starting(client, user, job_id, *prefixes))
    pgid = int(lines["group "])
    # sh and its two sleeps, the one in the background and the one it waits for.
    await until(lambda: _group_has(pgid, 3), timeout=10)
    escaped = [int(lines["escaped "])] if isolated else []
    assert all(alive(pid) for pid in escaped) and not set(escaped) & set(group_of(pgid))

    worker.send_signal(signal.SIGKILL)
    await worker.wait()

    await until(lambda: _none_left(pgid, escaped), timeout=15)
    # The guard logs what it killed in the worker's log.
    await until(lambda: _logged(workers.logs / "worker0.log", f"killed process group {pgid} (sh"))


async def _lines_starting(client: Client, who: Any, job_id: str, *prefixes: str) -> Any:
    found = {}
    for line in await lines_of(client, who, job_id):
        for prefix in prefixes:
            if line.startswith(prefix):
                found[prefix] = line.removeprefix(prefix).strip()
    return found if len(found) == len(prefixes) else None


async def _logged(path: Path, text: str) -> bool:
    return text in await asyncio.to_thread(path.read_text)


async def _group_has(pgid: int, count: int) -> bool:
    return len(group_of(pgid)) == count


async def _none_left(pgid: int, pids: list[int]) -> bool:
    return not group_of(pgid) and not any(alive(pid) for pid in pids)


async def _has_line(client: Client, who: Any, job_id: str, line: str) -> bool:
    return line in await lines_of(client, who, job_id)


SPAWNING = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
open('pids', 'w').write(f'{os.getpid()} {child.pid}')
print('running', flush=True)
time.sleep(60)
"""


async def test_cancelling_a_running_phase_stops_its_process_group_within_seconds(
    client: Client, workers: Workers, user: Any, phase_python: str
) -> None:
    project_id, job_id = await execute(
        client, user, [{"name": "long", "command": [phase_python, "-c", SPAWNING]}]
    )
    await workers.start()
    await until(lambda: _has_line(client, user, job_id, "running"))
    pids = [int(p) for p in (workers.workdir / project_id / "pids").read_text().split()]
    assert all(alive(pid) for pid in pids)

    loop = asyncio.get_running_loop()
    asked = loop.time()
    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers)
    assert (await ok(resp))["cancel_requested"] is True
    await until(lambda: _all_gone(pids), timeout=10)
    stopped_after = loop.time() - asked
    shown = await finished(client, user, job_id, timeout=10)
    assert shown["status"] == "cancelled"
    assert shown["phases"][0]["status"] == "failed"
    assert stopped_after < 10
    project = await ok(await client.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] != "running"


async def _all_gone(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)


SHOW_SECRET = """
import hashlib, os
token = os.environ['TOKEN']
print(hashlib.sha256(token.encode()).hexdigest())
print('token is', token, flush=True)
"""


async def test_a_phase_gets_its_secret_in_its_environment_and_its_output_is_masked(
    client: Client, workers: Workers, user: Any, admin: Any, node: LogNode, phase_python: str
) -> None:
    secret = "e2e-s3cr3t-9d0b"
    phases = [{"name": "use", "command": [phase_python, "-c", SHOW_SECRET],
               "env": {"MODE": "ci", "TOKEN": {"secret": secret}}}]  # fmt: skip
    _, job_id = await execute(client, user, phases)
    await workers.start()
    shown = await finished(client, user, job_id)

    assert shown["status"] == "completed", shown
    assert await lines_of(client, user, job_id) == [
        hashlib.sha256(secret.encode()).hexdigest(),
        "token is ***",
    ]
    assert node.pool is not None
    rows = await node.pool.fetch("SELECT data::text AS data FROM events")
    assert not any(secret in r["data"] for r in rows)
    assert secret not in str(await events_of(client, admin, job_id))


async def test_a_worker_started_as_root_runs_a_users_phase_as_the_phase_user_with_nothing_of_its(
    client: Client, workers: Workers, user: Any, worker: Any, as_root: None, phase_probe: Any
) -> None:
    planted = "planted-secret-of-the-worker-" + os.urandom(8).hex()
    phase = {
        "name": "probe",
        "command": phase_probe.command,
        "env": {"PHASE_VAR": "declared"},
        "prompt": "probe the phase",
    }
    body = {"name": "probe", "phases": [phase]}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=user.headers), 201)
    await ok(await client.post(f"/api/v1/projects/{project['id']}/ready", headers=user.headers))
    run = await ok(
        await client.post(
            f"/api/v1/projects/{project['id']}/execute",
            json={"model": "the-model"},
            headers=user.headers,
        ),
        202,
    )
    await workers.start(HELIX_JWT_SECRET=planted, SOME_TOOL_TOKEN=planted)
    shown = await finished(client, user, run["job_id"])

    assert shown["status"] == "completed", shown
    lines = await lines_of(client, user, run["job_id"])
    phase_probe.assert_isolated(lines, secrets=[planted, worker.key], declared={"PHASE_VAR"})
    assert "env PHASE_VAR=declared" in lines and "env HELIX_MODEL=the-model" in lines
    assert "env HELIX_PROMPT=probe the phase" in lines
    phase_user = pwd.getpwnam("helix-phase")
    workspace = workers.workdir / project["id"]
    assert f"env HOME={workspace.resolve()}" in lines
    # The context file is the phase user's to read, and no one else's.
    context = workspace / ".helix-context.json"
    assert f"env HELIX_CONTEXT_FILE={context.resolve()}" in lines
    found = context.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (phase_user.pw_uid, 0o600)
    made = (workspace / "made-by-the-phase").stat()
    assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (phase_user.pw_uid, 0o600)
    found = workspace.stat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (phase_user.pw_uid, 0o700)
    assert stat.S_IMODE(workers.workdir.stat().st_mode) == 0o711


# Phase one waits for the test to open its gate; phase two leaves a mark.
GATED = """
import os, time
print('one waiting', flush=True)
while not os.path.exists('gate'):
    time.sleep(0.05)
print('one done', flush=True)
"""
SECOND = "open('two-ran', 'w').write('yes'); print('two ran')"


async def _run_two_phases(
    client: Client, workers: Workers, who: Any, py: str, first: str
) -> tuple[str, str]:
    """Execute phases `one` (the script `first`) and `two` (SECOND) with a worker running."""
    phases = [
        {"name": "one", "command": [py, "-c", first]},
        {"name": "two", "command": [py, "-c", SECOND]},
    ]
    ran = await execute(client, who, phases)
    await workers.start()
    return ran


async def _job_status(client: Client, who: Any, job_id: str, status: str) -> Any:
    shown = await job_of(client, who, job_id)
    return shown if shown["status"] == status else None


async def test_a_paused_project_finishes_its_running_phase_then_holds_until_resumed(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    project_id, job_id = await _run_two_phases(client, workers, user, phase_python, GATED)
    await until(lambda: _has_line(client, user, job_id, "one waiting"))

    paused = await client.post(f"/api/v1/projects/{project_id}/pause", headers=user.headers)
    assert (await ok(paused))["status"] == "paused"
    waiting = await job_of(client, user, job_id)
    assert (waiting["status"], waiting["pause_requested"]) == ("running", True)
    (workers.workdir / project_id / "gate").write_text("open")
    held = await until(lambda: _job_status(client, user, job_id, "paused"))

    assert [(p["name"], p["status"]) for p in held["phases"]] == [
        ("one", "completed"),
        ("two", "pending"),
    ]
    assert (held["worker_id"], held["lease_expires_at"], held["pause_requested"]) == (
        None,
        None,
        False,
    )
    await until(lambda: _logged(workers.logs / "worker0.log", f"job {job_id}: paused"))
    still = await job_of(client, user, job_id)
    assert still["status"] == "paused" and still["phases"][1]["status"] == "pending"
    assert not (workers.workdir / project_id / "two-ran").exists()
    project = await ok(await client.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "paused"

    resumed = await client.post(f"/api/v1/projects/{project_id}/resume", headers=user.headers)
    assert (await ok(resumed))["status"] == "running"
    shown = await finished(client, user, job_id)
    assert shown["status"] == "completed", shown
    assert [p["status"] for p in shown["phases"]] == ["completed", "completed"]
    assert "two ran" in await lines_of(client, user, job_id)
    types = [e["type"] for e in await events_of(client, admin, job_id)]
    assert types.count("job.phase_started") == 2
    order = [t for t in types if t in ("job.pause_requested", "job.paused", "job.resumed")]
    assert order == ["job.pause_requested", "job.paused", "job.resumed"]
    assert types.index("job.paused") > types.index("job.phase_completed")
    project = await ok(await client.get(f"/api/v1/projects/{project_id}", headers=user.headers))
    assert project["status"] == "completed"


# Phase one runs until stopped the first time and completes the second time.
RERUN = """
import os, time
first = not os.path.exists('ran-once')
open('ran-once', 'a').write('x')
if first:
    open('pid', 'w').write(str(os.getpid()))
    print('first run', flush=True)
    time.sleep(60)
print('second run', flush=True)
"""


async def test_pausing_now_stops_the_running_phase_and_resume_runs_it_again(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    project_id, job_id = await _run_two_phases(client, workers, user, phase_python, RERUN)
    await until(lambda: _has_line(client, user, job_id, "first run"))
    pid = int((workers.workdir / project_id / "pid").read_text())
    assert alive(pid)

    resp = await client.post(
        f"/api/v1/projects/{project_id}/pause", json={"now": True}, headers=user.headers
    )
    assert (await ok(resp))["status"] == "paused"
    held = await job_of(client, user, job_id)
    assert held["status"] == "paused"
    assert [p["status"] for p in held["phases"]] == ["pending", "pending"]
    assert held["worker_id"] is None
    await until(lambda: _all_gone([pid]), timeout=30)
    still = await job_of(client, user, job_id)
    assert still["status"] == "paused" and still["phases"][0]["status"] == "pending"

    await ok(await client.post(f"/api/v1/projects/{project_id}/resume", headers=user.headers))
    shown = await finished(client, user, job_id)
    assert shown["status"] == "completed", shown
    assert [p["status"] for p in shown["phases"]] == ["completed", "completed"]
    lines = await lines_of(client, user, job_id)
    assert lines.count("first run") == 1 and "second run" in lines and "two ran" in lines
    events = await events_of(client, admin, job_id)
    started = [e["data"]["phase"] for e in events if e["type"] == "job.phase_started"]
    assert started == ["one", "one", "two"]
    [pause] = [e for e in events if e["type"] == "job.paused"]
    assert pause["data"]["stopped_phase"] == "one"
    assert shown["attempt"] == 2  # two claims: the one the pause stopped, and the rerun


async def test_a_quick_action_runs_on_a_worker_and_a_wait_answers_with_its_end(
    client: Client, workers: Workers, user: Any, phase_python: str
) -> None:
    say = "import os; print('ran with', os.environ.get('HELIX_MODEL'))"
    body = {"prompt": "say hello", "model": "m-1",
            "phases": [{"name": "say", "command": [phase_python, "-c", say]}]}  # fmt: skip
    run = await ok(await client.post("/api/v1/quick-action", json=body, headers=user.headers), 202)
    await workers.start()
    waited = f"/api/v1/jobs/{run['job_id']}?wait=60"
    shown = await ok(await client.get(waited, headers=user.headers))
    assert shown["status"] == "completed", shown
    assert 0 < shown["waited_seconds"] < 60
    assert await lines_of(client, user, run["job_id"]) == ["ran with m-1"]

    messages = f"/api/v1/projects/{run['project_id']}/messages"
    again = {"content": "once more", "run": True, "model": "m-2"}
    follow_up = await ok(await client.post(messages, json=again, headers=user.headers), 201)
    second = await ok(
        await client.get(f"/api/v1/jobs/{follow_up['job_id']}?wait=60", headers=user.headers)
    )
    assert second["status"] == "completed", second
    assert await lines_of(client, user, follow_up["job_id"]) == ["ran with m-2"]
    project = await ok(
        await client.get(f"/api/v1/projects/{run['project_id']}", headers=user.headers)
    )
    assert (project["status"], project["latest_job_id"]) == ("completed", follow_up["job_id"])


# A fake coding agent: it reads what a real one would (model, prompt, context file), works in
# its workspace and reports through `::helix` lines, some of them malformed on purpose.
FAKE_AGENT = r"""
import json, os, pathlib
context = json.load(open(os.environ["HELIX_CONTEXT_FILE"]))
print("model", os.environ.get("HELIX_MODEL"))
print("prompt", os.environ.get("HELIX_PROMPT"))
print("project", context["project"]["name"], "/", context["project"]["description"])
print("said", [(m["role"], m["content"]) for m in context["discussion"]])
print("earlier", [(p["name"], p["status"], [(f["path"], f["change"]) for f in p["files"]],
                   p["cost"]["tokens"]) for p in context["phases"] if p["status"] == "completed"])
print("Thinking...")
print("")
if os.environ["HELIX_PHASE"] == "plan":
    pathlib.Path("PLAN.md").write_text("1. write code\n")
    print("::helix progress 40")
    print("::helix cost tokens=1200 usd=0.03")
    print("::helix file PLAN.md")
    print("::helix file ../../escape")
    print("::helix message The plan is ready")
    print("::helix progress 140")
    print("::helix cost usd=-1")
    print("::helix wave")
else:
    pathlib.Path("PLAN.md").write_text("1. write code (done)\n")
    pathlib.Path("code.py").write_text("print(42)\n")
    print("::helix cost tokens=300")
"""


async def test_an_agent_phase_gets_model_prompt_and_context_and_reports_through_its_output(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    agent = [phase_python, "-c", FAKE_AGENT]
    body = {
        "name": "agentic",
        "description": "A tool that prints 42",
        "phases": [
            {"name": "plan", "command": agent, "prompt": "Write the plan"},
            {"name": "implement", "command": agent, "prompt": "Carry out PLAN.md"},
        ],
    }
    project = await ok(await client.post("/api/v1/projects", json=body, headers=user.headers), 201)
    base = f"/api/v1/projects/{project['id']}"
    said = {"content": "Keep it small"}
    await ok(await client.post(f"{base}/messages", json=said, headers=user.headers), 201)
    await ok(await client.post(f"{base}/ready", headers=user.headers))
    model = {"model": "claude-sonnet-4"}
    run = await ok(await client.post(f"{base}/execute", json=model, headers=user.headers), 202)
    await workers.start(HELIX_OUTPUT_FILTER_PATTERNS=r'["^Thinking\\.\\.\\.$", "^\\s*$"]')
    shown = await finished(client, user, run["job_id"])

    assert shown["status"] == "completed", shown
    lines = await lines_of(client, user, run["job_id"])
    assert lines.count("model claude-sonnet-4") == 2
    assert "prompt Write the plan" in lines and "prompt Carry out PLAN.md" in lines
    assert "project agentic / A tool that prints 42" in lines
    assert "said [('user', 'Keep it small')]" in lines
    # The second phase sees the first one's results, and the agent's message in the thread.
    assert "earlier [('plan', 'completed', [('PLAN.md', 'created')], 1200)]" in lines
    assert "said [('user', 'Keep it small'), ('agent', 'The plan is ready')]" in lines
    # Directives are reports, not output; malformed ones stay output; filtered lines go.
    assert [line for line in lines if line.startswith("::helix")] == [
        "::helix progress 140",
        "::helix cost usd=-1",
        "::helix wave",
    ]
    assert "Thinking..." not in lines and "" not in lines
    plan, implement = shown["phases"]
    assert plan["cost"] == {"tokens": 1200, "usd": 0.03}
    assert implement["cost"] == {"tokens": 300, "usd": 0.0}
    assert shown["cost"] == {"tokens": 1500, "usd": 0.03}
    assert [(f["path"], f["change"]) for f in plan["files"]] == [("PLAN.md", "created")]
    assert [(f["path"], f["change"]) for f in implement["files"]] == [
        ("PLAN.md", "modified"),
        ("code.py", "created"),
    ]
    events = await events_of(client, admin, run["job_id"])
    # The agent's 40, then the worker's own as each phase of the two completes.
    assert [e["data"]["percent"] for e in events if e["type"] == "job.progress"] == [40, 50, 100]
    [message] = [e["data"] for e in events if e["type"] == "job.phase_message"]
    assert (message["phase"], message["content"]) == ("plan", "The plan is ready")
    thread = await ok(await client.get(f"{base}/messages?role=agent", headers=user.headers))
    assert [(m["author"], m["content"]) for m in thread["items"]] == [("plan", "The plan is ready")]


async def test_a_job_past_its_projects_duration_limit_is_failed_and_its_phase_stopped(
    client: Client, workers: Workers, user: Any, admin: Any, phase_python: str
) -> None:
    forever = [phase_python, "-c", "import time; print('working', flush=True); time.sleep(600)"]
    body = {"name": "slow", "max_job_duration": 1, "phases": [{"name": "run", "command": forever}]}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=user.headers), 201)
    assert project["max_job_duration"] == 1
    base = f"/api/v1/projects/{project['id']}"
    await ok(await client.post(f"{base}/ready", headers=user.headers))
    run = await ok(await client.post(f"{base}/execute", headers=user.headers), 202)
    assert (await job_of(client, user, run["job_id"]))["max_duration_s"] == 1
    await workers.start()

    shown = await finished(client, user, run["job_id"])
    assert shown["status"] == "failed"
    assert "duration limit" in shown["error"]
    events = await events_of(client, admin, run["job_id"])
    assert events[-1]["type"] == "job.failed"
    assert events[-1]["data"]["reason"] == "duration_limit"
    # The worker lets the job go (its report is fenced off) and kills the phase: it runs
    # the next job long before the sleeping phase would have ended.
    _, after = await execute(client, user, [{"name": "next", "command": ["true"]}])
    assert (await finished(client, user, after))["status"] == "completed"


async def test_the_deployments_duration_limit_applies_unless_the_project_has_its_own(
    make_client: Callable[..., Awaitable[Client]], user: Any
) -> None:
    client = await make_client(max_job_duration=30.0)
    plan = [{"name": "run", "command": ["true"]}]
    _, default = await execute(client, user, plan)
    assert (await job_of(client, user, default))["max_duration_s"] == 30.0

    body = {"name": "own", "max_job_duration": 5, "phases": plan}
    project = await ok(await client.post("/api/v1/projects", json=body, headers=user.headers), 201)
    base = f"/api/v1/projects/{project['id']}"
    await ok(await client.post(f"{base}/ready", headers=user.headers))
    own = await ok(await client.post(f"{base}/execute", headers=user.headers), 202)
    assert (await job_of(client, user, own["job_id"]))["max_duration_s"] == 5
    # 0 clears the project's own limit.
    cleared = {"max_job_duration": 0}
    shown = await ok(await client.patch(base, json=cleared, headers=user.headers))
    assert shown["max_job_duration"] is None
    refused = await client.patch(base, json={"max_job_duration": -1}, headers=user.headers)
    assert refused.status in (400, 422)
    assert "error" in await refused.json()
