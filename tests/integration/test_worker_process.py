"""Running one phase's process: output batches, exit codes, timeouts, stops and the env."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from helix.worker.isolation import PhaseUser, phase_environment, phase_user
from helix.worker.process import (
    Command,
    Finished,
    OutputOptions,
    PhaseProcess,
    Stop,
)
from helix.worker.sweep import processes_of

FAST = OutputOptions(lines_per_event=100, flush_interval=0.05, stderr_tail=20, kill_grace=0.5)


class Recorder:
    """An output sink that keeps every batch with the time it arrived."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str], float]] = []
        self.started = asyncio.Event()

    async def __call__(self, stream: str, lines: list[str]) -> None:
        self.batches.append((stream, list(lines), time.monotonic()))
        self.started.set()

    def lines(self, stream: str) -> list[str]:
        return [line for s, batch, _ in self.batches if s == stream for line in batch]

    def sizes(self, stream: str) -> list[int]:
        return [len(batch) for s, batch, _ in self.batches if s == stream]


def sh(script: str, tmp_path: Path, timeout_s: float | None = None) -> Command:
    return Command(
        argv=("sh", "-c", script), cwd=tmp_path, env=dict(os.environ), timeout_s=timeout_s
    )


async def run(command: Command, options: OutputOptions = FAST) -> tuple[Finished, Recorder]:
    sink = Recorder()
    finished = await asyncio.wait_for(PhaseProcess(command, sink, options).run(), 10)
    return finished, sink


def is_gone(pid: int) -> bool:
    """No such process, or only a zombie (an orphan that init has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def wait_until_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        await asyncio.sleep(0.02)
    return is_gone(pid)


async def test_interleaved_output_arrives_complete_and_in_order_per_stream(
    tmp_path: Path,
) -> None:
    script = (
        "printf 'o1\\no2\\n'; printf 'e1\\n' >&2; printf 'o3\\no4\\no5\\n'; "
        "printf 'e2\\r\\ne3' >&2; printf 'o6'"
    )
    options = OutputOptions(lines_per_event=2, flush_interval=10, stderr_tail=5, kill_grace=1)

    finished, sink = await run(sh(script, tmp_path), options)

    assert finished.exit_code == 0
    assert sink.lines("stdout") == ["o1", "o2", "o3", "o4", "o5", "o6"]
    assert sink.lines("stderr") == ["e1", "e2", "e3"]
    assert sink.sizes("stdout") == [2, 2, 2]
    assert sink.sizes("stderr") == [2, 1]
    assert finished.stderr_tail == ("e1", "e2", "e3")


async def test_a_slow_printer_s_output_is_sent_by_time_before_it_exits(tmp_path: Path) -> None:
    started = time.monotonic()

    finished, sink = await run(sh("echo first; sleep 0.8; echo second", tmp_path))

    assert finished.exit_code == 0
    assert [lines for _, lines, _ in sink.batches] == [["first"], ["second"]]
    first_at = sink.batches[0][2] - started
    assert first_at < 0.6 < finished.duration_s


async def test_long_lines_are_truncated_and_the_next_line_is_intact(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 200000 + '\\nafter\\n' + 'é' * 20000)"
    command = Command(argv=(sys.executable, "-c", script), cwd=tmp_path, env=dict(os.environ))

    finished, sink = await run(command)

    assert finished.exit_code == 0
    assert sink.lines("stdout") == ["x" * 16384, "after", "é" * 16384]


async def test_a_non_zero_exit_keeps_the_last_stderr_lines(tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5; do echo err$i >&2; done; echo out; exit 1"
    options = OutputOptions(lines_per_event=100, flush_interval=0.05, stderr_tail=3)

    finished, sink = await run(sh(script, tmp_path), options)

    assert finished.exit_code == 1
    assert finished.stderr_tail == ("err3", "err4", "err5")
    assert not finished.timed_out and finished.stopped is None
    assert sink.lines("stderr") == ["err1", "err2", "err3", "err4", "err5"]


async def test_a_timeout_kills_the_whole_process_group_with_its_grandchildren(
    tmp_path: Path,
) -> None:
    finished, sink = await run(sh("sleep 60 & echo $!; sleep 60", tmp_path, timeout_s=0.5))

    grandchild = int(sink.lines("stdout")[0])
    assert finished.timed_out
    assert finished.exit_code == -signal.SIGTERM
    assert finished.duration_s < 3
    assert await wait_until_gone(grandchild, within=1.0)


async def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    options = OutputOptions(flush_interval=0.05, kill_grace=0.3)

    finished, _ = await run(sh("trap '' TERM; sleep 60", tmp_path, timeout_s=0.3), options)

    assert finished.timed_out
    assert finished.exit_code == -signal.SIGKILL
    assert 0.6 <= finished.duration_s < 3


async def test_a_stop_request_ends_the_group_within_seconds(tmp_path: Path) -> None:
    sink = Recorder()
    process = PhaseProcess(sh("sleep 60 & echo $!; sleep 60", tmp_path), sink, FAST)
    running = asyncio.create_task(process.run())
    await asyncio.wait_for(sink.started.wait(), 5)
    grandchild = int(sink.lines("stdout")[0])

    process.stop(Stop.TERMINATE)
    finished = await asyncio.wait_for(running, 3)

    assert finished.stopped is Stop.TERMINATE
    assert not finished.timed_out
    assert finished.exit_code is not None and finished.exit_code < 0
    assert await wait_until_gone(grandchild, within=1.0)


async def test_a_kill_request_does_not_wait_for_the_grace(tmp_path: Path) -> None:
    options = OutputOptions(flush_interval=0.05, kill_grace=30)
    sink = Recorder()
    process = PhaseProcess(sh("trap '' TERM; echo up; sleep 60", tmp_path), sink, options)
    running = asyncio.create_task(process.run())
    await asyncio.wait_for(sink.started.wait(), 5)

    process.stop(Stop.TERMINATE)
    await asyncio.sleep(0.2)
    process.stop(Stop.KILL)
    finished = await asyncio.wait_for(running, 3)

    assert finished.stopped is Stop.KILL
    assert finished.exit_code == -signal.SIGKILL


async def test_leftover_background_processes_do_not_outlive_the_phase(tmp_path: Path) -> None:
    finished, sink = await run(sh("sleep 60 & echo $!", tmp_path))

    assert finished.exit_code == 0
    assert finished.duration_s < 3
    assert await wait_until_gone(int(sink.lines("stdout")[0]), within=1.0)


async def test_a_command_that_cannot_start_is_reported_not_raised(tmp_path: Path) -> None:
    command = Command(argv=("helix-no-such-command",), cwd=tmp_path, env=dict(os.environ))

    finished, sink = await run(command)

    assert finished.exit_code is None
    assert finished.start_error is not None and "helix-no-such-command" in finished.start_error
    assert sink.batches == []


async def test_a_failing_sink_kills_the_process_and_raises(tmp_path: Path) -> None:
    class LeaseLost(Exception):
        pass

    async def sink(stream: str, lines: list[str]) -> None:
        raise LeaseLost

    process = PhaseProcess(sh("echo hi; exec sleep 60", tmp_path), sink, FAST)
    started = time.monotonic()

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(process.run(), 5)

    assert time.monotonic() - started < 2


async def test_a_phase_sees_its_own_variables_and_nothing_else_of_the_workers(
    tmp_path: Path,
) -> None:
    worker_env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "HOME": "/root",
        "HELIX_WORKER_KEY": "hxk_secret",
        "HELIX_JWT_SECRET": "jwt secret",
        "HELIX_DATABASE_URL": "postgresql://helix:password@db/helix",
        "AWS_SECRET_ACCESS_KEY": "aws secret",
        "SOME_TOOL_TOKEN": "hxk_secret",
    }
    user = PhaseUser(name="phase", uid=os.getuid(), gid=os.getgid(), home=None, switch=False)
    env = phase_environment(
        worker_env,
        user=user,
        workspace=tmp_path,
        extra={"PHASE_VAR": "from the plan", "HELIX_PHASE": "b"},
    )

    finished, sink = await run(Command(argv=("env",), cwd=tmp_path, env=env))

    assert finished.exit_code == 0
    assert dict(line.split("=", 1) for line in sink.lines("stdout")) == {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "HOME": str(tmp_path),
        "USER": "phase",
        "LOGNAME": "phase",
        "PHASE_VAR": "from the plan",
        "HELIX_PHASE": "b",
    }


async def test_as_root_a_phase_runs_as_the_phase_user_alone_and_can_gain_no_privileges(
    tmp_path: Path, as_root: None
) -> None:
    user = phase_user()
    os.chmod(tmp_path, 0o755)
    script = "id -u; id -G; umask; grep NoNewPrivs /proc/self/status; touch made"
    command = Command(
        argv=("sh", "-c", script), cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, user=user
    )

    finished, sink = await run(command)

    assert finished.exit_code == 1  # `touch`: the phase user may not write where root owns
    assert sink.lines("stdout") == [str(user.uid), str(user.gid), "0077", "NoNewPrivs:\t1"]
    assert user.uid != 0 and user.switch


async def test_the_process_runs_in_the_workspace_with_stdin_closed(tmp_path: Path) -> None:
    finished, sink = await run(sh("pwd; cat; echo done", tmp_path))

    assert finished.exit_code == 0
    assert sink.lines("stdout") == [str(tmp_path), "done"]


async def test_a_process_that_left_the_group_does_not_keep_the_phase_open(
    tmp_path: Path,
) -> None:
    escape = (
        f"{sys.executable} -c 'import os, time; os.setsid(); print(os.getpid(), flush=True); "
        "time.sleep(30)'"
    )
    started = time.monotonic()
    finished, sink = await run(sh(f"{escape} & sleep 0.5; echo done", tmp_path))
    escaped = int(sink.lines("stdout")[0])
    try:
        assert finished.exit_code == 0
        assert sink.lines("stdout")[1:] == ["done"]
        # It really left the group and held the pipe; as the worker's own user it is not
        # swept (that would kill the worker), so it lives on.
        assert not is_gone(escaped)
        assert time.monotonic() - started < 4
    finally:
        os.kill(escaped, signal.SIGKILL)


# Two ways out of the phase's process group: a double fork into a session of its own (the
# grandchild prints its pid, and the phase goes on only once it has), and setsid(1).
ESCAPE = """
import os, time
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        os.close(write)
        time.sleep(300)
    os._exit(0)
os.close(write)
os.read(read, 1)
"""


def escaping(user: PhaseUser, python: str, cwd: Path, then: str) -> Command:
    script = f"{shlex.quote(python)} -c {shlex.quote(ESCAPE)}; setsid sleep 300 & echo $!; {then}"
    return Command(argv=("sh", "-c", script), cwd=cwd, env={"PATH": "/usr/bin:/bin"}, user=user)


def pids(sink: Recorder) -> list[int]:
    return [int(line) for line in sink.lines("stdout") if line.isdigit()]


async def test_as_root_what_left_the_phase_s_group_does_not_outlive_the_phase(
    tmp_path: Path, spare_phase_user: PhaseUser, phase_python: str
) -> None:
    command = escaping(spare_phase_user, phase_python, tmp_path, then="echo done")

    finished, sink = await run(command)

    assert finished.exit_code == 0
    assert sink.lines("stdout")[-1] == "done"
    escaped = pids(sink)
    assert len(escaped) == 2
    for pid in escaped:
        assert await wait_until_gone(pid), f"process {pid} outlived the phase"
    assert processes_of(spare_phase_user.uid) == []


@pytest.mark.parametrize("ending", ["failed sink", "cancelled run"])
async def test_as_root_a_phase_ended_by_an_error_or_a_cancel_leaves_no_process_behind(
    tmp_path: Path, spare_phase_user: PhaseUser, phase_python: str, ending: str
) -> None:
    class LeaseLost(Exception):
        pass

    seen: list[str] = []
    ready = asyncio.Event()

    async def sink(stream: str, lines: list[str]) -> None:
        seen.extend(lines)
        if "go" in lines:
            ready.set()
            if ending == "failed sink":
                raise LeaseLost

    command = escaping(spare_phase_user, phase_python, tmp_path, then="echo go; exec sleep 60")
    running = asyncio.create_task(PhaseProcess(command, sink, FAST).run())
    await asyncio.wait_for(ready.wait(), 10)
    if ending == "cancelled run":
        running.cancel()

    with pytest.raises(asyncio.CancelledError if ending == "cancelled run" else LeaseLost):
        await asyncio.wait_for(running, 10)

    escaped = [int(line) for line in seen if line.isdigit()]
    assert len(escaped) == 2
    for pid in escaped:
        assert await wait_until_gone(pid), f"process {pid} outlived the phase"
    assert processes_of(spare_phase_user.uid) == []
