"""What a dead worker left running in its workdir: the next worker started there kills it and
says so; a live worker's running phase, and a process that was given a recorded pid since, are
left alone."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helix.worker import leftovers
from tests.support import group_of

# A worker that starts a phase (a shell with a sleep in the background and one it waits for),
# records its process group as a worker does, and dies at once, removing nothing.
DEAD_WORKER = """
import os, subprocess, sys
from pathlib import Path
from helix.worker import leftovers
workdir = Path(sys.argv[1])
phase = subprocess.Popen(
    ["sh", "-c", "sleep 300 & sleep 300"], cwd=workdir, start_new_session=True,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
leftovers.record(
    leftovers.directory(workdir), phase.pid, uid=os.geteuid(), argv0="sh", cwd=workdir
)
print(phase.pid, flush=True)
os._exit(0)
"""


def left_by_a_dead_worker(workdir: Path) -> int:
    """The process group of the phase a worker left running when it died."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", DEAD_WORKER, str(workdir)],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    pgid = int(out)
    # The shell and its two sleeps, once the shell has started them.
    wait_for(lambda: len(group_of(pgid)) == 3)
    return pgid


def wait_for(check: Callable[[], bool], timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def kill_group(pgid: int) -> None:
    if group_of(pgid):
        os.killpg(pgid, signal.SIGKILL)


async def test_a_worker_started_on_a_workdir_kills_what_a_dead_worker_left_running_there(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "workspaces"
    pgid = left_by_a_dead_worker(workdir)
    try:
        # Phases as the worker's own user (as root, root's: nothing to switch to), and a server
        # that is not there: the worker cleans up when it starts, before it registers.
        own = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "helix.cli", "worker", "--server", "http://127.0.0.1:9",
            "--workdir", str(workdir), "--phase-user", own,
            env={**env, "HELIX_WORKER_KEY": "hx_not_a_real_key"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await asyncio.to_thread(wait_for, lambda: not group_of(pgid))
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(worker.communicate(), 30)

        assert f"killed process group {pgid} (sh in {workdir}) that worker process" in err.decode()
        assert list((workdir / leftovers.DIRECTORY).iterdir()) == []
    finally:
        kill_group(pgid)


def test_a_live_workers_running_phase_is_left_alone(tmp_path: Path) -> None:
    where = leftovers.directory(tmp_path)
    phase = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        held = leftovers.record(where, phase.pid, uid=os.geteuid(), argv0="sleep", cwd=tmp_path)
        assert held is not None

        # The lock is this process's: from another open file it looks as a live worker's.
        assert leftovers.end_leftovers(where) == []
        assert phase.poll() is None
        assert [p.name for p in where.iterdir()] == [f"{phase.pid}.json"]

        held.remove()
        assert list(where.iterdir()) == []
    finally:
        phase.kill()
        phase.wait()


def test_a_recorded_pid_that_now_is_another_process_is_not_killed(tmp_path: Path) -> None:
    pgid = left_by_a_dead_worker(tmp_path)
    try:
        [path] = (tmp_path / leftovers.DIRECTORY).iterdir()
        found = json.loads(path.read_text())
        # As if the recorded group had ended and the kernel had given its pid to this one.
        path.write_text(json.dumps({**found, "start": found["start"] - 1}))

        assert leftovers.end_leftovers(path.parent) == []
        assert len(group_of(pgid)) == 3
        assert not path.exists()
    finally:
        kill_group(pgid)
