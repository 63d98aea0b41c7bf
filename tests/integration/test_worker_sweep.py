"""Sweeping the phase user: every process of it is killed, also those that fork, are stopped,
hide behind an exited main thread, or stop whoever comes to kill them."""

from __future__ import annotations

import asyncio
import pwd
import subprocess
import time
from collections.abc import Callable, Iterator

import attrs
import pytest

from helix.system_users import as_user
from helix.worker.isolation import PhaseUser
from helix.worker.sweep import processes_of, stop_and_kill, sweep

# The main thread exits and leaves another running: /proc shows the process as a zombie.
BEHIND_AN_EXITED_THREAD = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(300,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""
# Stops every other process of its user as soon as it sees it, as a phase might do to whoever
# is sent to kill it.
STOPPING_OTHERS = """
import os, signal
me, uid = os.getpid(), os.getuid()
while True:
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f'/proc/{name}').st_uid == uid:
                os.kill(int(name), signal.SIGSTOP)
        except OSError:
            pass
"""


class Spawner:
    """Starts processes as a user, each in a session of its own, and reaps them at the end."""

    def __init__(self, user: PhaseUser) -> None:
        self.options = as_user(pwd.getpwuid(user.uid))
        self.started: list[subprocess.Popen[bytes]] = []

    def __call__(self, *argv: str) -> int:
        proc = subprocess.Popen(
            argv, cwd="/", stdin=subprocess.DEVNULL, start_new_session=True, **self.options
        )
        self.started.append(proc)
        return proc.pid

    def reap(self) -> None:
        for proc in self.started:
            proc.kill()
            proc.wait()


@pytest.fixture
def spawn(spare_phase_user: PhaseUser) -> Iterator[Spawner]:
    spawner = Spawner(spare_phase_user)
    yield spawner
    spawner.reap()


async def eventually(check: Callable[[], bool], uid: int) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, processes_of(uid)
        await asyncio.sleep(0.02)


async def test_as_root_every_process_of_the_user_is_stopped_then_killed(
    spare_phase_user: PhaseUser, spawn: Spawner, phase_python: str
) -> None:
    uid = spare_phase_user.uid
    sleeper = spawn("sleep", "300")
    stopped = spawn("sh", "-c", "kill -STOP $$")
    behind = spawn(phase_python, "-c", BEHIND_AN_EXITED_THREAD)
    spawn("sh", "-c", "while :; do sleep 300 & done")
    await eventually(lambda: len(processes_of(uid)) >= 10, uid)
    assert {sleeper, stopped, behind} <= {pid for pid, _ in processes_of(uid)}

    found = await asyncio.to_thread(stop_and_kill, uid)

    assert {sleeper, stopped, behind} <= set(found)
    await eventually(lambda: processes_of(uid) == [], uid)


async def test_as_root_a_sweep_kills_processes_that_stop_whoever_comes_to_kill_them(
    spare_phase_user: PhaseUser, spawn: Spawner, phase_python: str
) -> None:
    uid = spare_phase_user.uid
    # The sleeper first: once the stopper runs, it would stop a child of ours between its
    # change of user and its exec, and the spawn would wait for that child for ever.
    spawn("sleep", "300")
    await eventually(lambda: len(processes_of(uid)) == 1, uid)
    spawn(phase_python, "-c", STOPPING_OTHERS)
    await eventually(lambda: len(processes_of(uid)) == 2, uid)

    await sweep(spare_phase_user)

    assert processes_of(uid) == []


async def test_a_sweep_of_the_worker_s_own_user_kills_nothing(
    spare_phase_user: PhaseUser, spawn: Spawner
) -> None:
    pid = spawn("sleep", "300")
    # As the worker's own user, a phase user is not swept: that would kill the worker.
    own = attrs.evolve(spare_phase_user, switch=False)

    await sweep(own)

    assert pid in {found for found, _ in processes_of(own.uid)}
