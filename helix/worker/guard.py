"""The worker's guard: a small process beside the worker that ends its phases when it dies.

A worker killed with SIGKILL runs no code of its own to stop its phase. Its guard learns of the
death from the kernel: it reads a pipe whose only writing end the worker holds (phases never
inherit it), and the read ends when the worker has exited, however it exited. The guard then
kills the process groups the worker recorded as running (`helix.worker.leftovers`) and, when
phases ran as a user of their own, every process of that user (`helix.worker.sweep`), which
also ends what left the group (through setsid, say). It holds the phase user's lock with the
worker (an inherited descriptor of the same lock), so no other worker can take that user on
until the sweep is over. A worker that stops as it should closes the pipe with nothing left
running, and the guard exits.

The guard runs as the worker's user, in a session of its own, and ignores SIGINT, SIGTERM and
SIGHUP: a Ctrl-C or a hang-up meant for the worker does not end it first. As root, phases
(another user) cannot signal it. As any other user they run as the guard's own user and can
kill it; what it then misses, the next worker on the workdir ends when it starts.

Its command line: the records' directory, the worker's pid and, when phases run as a user
of their own, that user's uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path

from helix.worker import leftovers
from helix.worker.isolation import PhaseUser
from helix.worker.sweep import sweep

log = logging.getLogger("helix.worker.guard")

# Not `-m helix.worker.guard`: the package imports this module, which would then run twice.
_MAIN = "import sys; from helix.worker.guard import main; sys.exit(main(sys.argv[1:]))"
# How long a guard told that its worker stops may take to look (and sweep) before it is killed.
_CLOSE_TIMEOUT_S = 10.0


class Guard:
    """The worker's side of its guard: started with the worker, closed when it stops."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, where: Path, user: PhaseUser, lock_fd: int | None) -> Guard:
        argv = [sys.executable, "-c", _MAIN, str(where), str(os.getpid())]
        if user.switch:
            argv.append(str(user.uid))
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd="/",
            # It needs none of the worker's settings, its key least of all.
            env={k: v for k, v in os.environ.items() if not k.startswith("HELIX_")},
            start_new_session=True,
            pass_fds=() if lock_fd is None else (lock_fd,),
        )
        return cls(process)

    async def close(self) -> None:
        """Tell the guard the worker stops, and wait until it has looked and exited."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), _CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("the worker's guard did not exit; killing it")
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
            return
        if self._process.returncode != 0:
            # It did not run to the end (it was killed, say): the worker ran unguarded.
            log.warning("the worker's guard had exited with status %s", self._process.returncode)


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    where, owner = Path(argv[0]), int(argv[1])
    phase_uid = int(argv[2]) if len(argv) > 2 else None
    while os.read(sys.stdin.fileno(), 4096):
        pass  # nothing is written: the read ends when the worker's end of the pipe closes
    ended = leftovers.end_leftovers(where, owner=owner)
    if phase_uid is not None:
        entry = pwd.getpwuid(phase_uid)
        user = PhaseUser(
            name=entry.pw_name, uid=phase_uid, gid=entry.pw_gid, home=None, switch=True
        )
        asyncio.run(sweep(user))
    if ended:
        log.warning("worker process %d is gone: its phases were killed", owner)
    return 0
