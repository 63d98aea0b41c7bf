"""Sweeping the phase user: once a phase is over, nothing it started runs on.

A phase's process group is stopped when the phase ends (`helix.worker.process`), but a process
can leave its group (setsid, a double fork) and would go on running as the phase user, able to
read `/proc` of, signal and ptrace the phases that come after it, other users' among them, since
they run as that same user. So a worker that runs its phases as a user of their own kills every
process of that user after each phase, and when it takes the user on (ending what a worker
before it left behind). That is right only because nothing else runs as the user: the worker
holds it against every other worker on the machine (`helix.worker.user_lock`), and it runs one
phase at a time (`Worker` claims a job only once the last one has ended, and `JobRun` runs a
job's phases in turn), so when a phase is over, every process of the user is that phase's.

First a process started as the phase user calls kill(-1, SIGKILL): the kernel signals every
process the caller may signal but itself while holding the task list, and a fork that races with
the fatal signal fails, so no child is left behind. A process of the phase user may still stop
or kill that caller before it acts; so the worker then looks through `/proc`, and whatever is
left it stops and kills itself, as root, through pidfds (a pid reused meanwhile never turns its
signal on another process): SIGSTOP until none is running (a stopped process can neither fork
nor wake the others), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time

from helix.worker import procfs
from helix.worker.isolation import DEFAULT_PATH, PhaseUser

log = logging.getLogger(__name__)

# `kill` is a builtin of every POSIX shell; a `kill` program is not on every system.
_KILL_EVERY_PROCESS = ("/bin/sh", "-c", "kill -9 -1")
_KILLER_TIMEOUT_S = 2.0
# Between looks through /proc: a killed process takes a moment to exit.
_PAUSES_S = (0.0, 0.01, 0.05, 0.25, 1.0)
_STOP_ROUNDS = 20
_STOP_PAUSE_S = 0.005
_STOPPED = frozenset({"T", "t"})


async def sweep(user: PhaseUser) -> None:
    """Kill every process of `user`, when phases run as a user of their own (nothing
    otherwise: the worker's own user runs the worker). Never raises for a process that
    cannot be killed; it logs it."""
    if not user.switch:
        return
    await _kill_as(user)
    for pause in _PAUSES_S:
        await asyncio.sleep(pause)
        if not await asyncio.to_thread(stop_and_kill, user.uid):
            return
    left = await asyncio.to_thread(processes_of, user.uid)
    if left:
        log.error(
            "processes of the phase user %s outlived its sweep: %s",
            user.name,
            ", ".join(str(pid) for pid, _ in left),
        )


def processes_of(uid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process running as `uid` (its real or effective uid). A zombie
    counts only while threads of it still run (its leader exited before them)."""
    found: list[tuple[int, str]] = []
    for pid in procfs.pids():
        status = procfs.status_of(pid)
        if status is not None and uid in status.uids and status.alive:
            found.append((pid, status.state))
    return found


def stop_and_kill(uid: int) -> list[int]:
    """As root: stop every process of `uid` until none of them runs, then kill them all; the
    pids it found (none: there was nothing left)."""
    held: dict[int, int] = {}  # pid: pidfd
    try:
        for _ in range(_STOP_ROUNDS):
            running = False
            for pid, state in processes_of(uid):
                if pid not in held:
                    pidfd = _open(pid, uid)
                    if pidfd is None:
                        continue
                    held[pid] = pidfd
                if state not in _STOPPED:
                    running = True
                    _send(held[pid], signal.SIGSTOP)
            if not running:
                break
            time.sleep(_STOP_PAUSE_S)
        for pidfd in held.values():
            _send(pidfd, signal.SIGKILL)
    finally:
        for pidfd in held.values():
            os.close(pidfd)
    return sorted(held)


async def _kill_as(user: PhaseUser) -> None:
    try:
        killer = await asyncio.create_subprocess_exec(
            *_KILL_EVERY_PROCESS,
            cwd="/",
            env={"PATH": DEFAULT_PATH},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **user.process_options(),
        )
    except OSError as exc:
        log.warning("could not start a process as %s to end its processes: %s", user.name, exc)
        return
    try:
        await asyncio.wait_for(killer.wait(), _KILLER_TIMEOUT_S)
    except TimeoutError:
        # A process of the phase user stopped it first: they are ended as root instead.
        log.warning("a process of %s stopped the one sent to end them", user.name)
        killer.kill()
        await killer.wait()
    except BaseException:
        killer.kill()
        raise


def _open(pid: int, uid: int) -> int | None:
    """A pidfd of the process `pid` if it runs as `uid`; None when it is gone or not `uid`'s."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        log.warning("cannot open a pidfd of process %d: %s", pid, exc)
        return None
    # Checked once the pidfd is open: had `pid` been reused by another process since the look
    # through /proc, the pidfd would be that process's, and this would see it.
    status = procfs.status_of(pid)
    if status is not None and uid in status.uids:
        return pidfd
    os.close(pidfd)
    return None


def _send(pidfd: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signum)
