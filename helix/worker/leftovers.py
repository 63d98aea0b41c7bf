"""What a dead worker leaves running: the process groups of its phases, recorded so that they are
ended all the same.

A phase runs in a process group of its own, which the worker stops when the phase ends
(`helix.worker.process`). A worker that is killed (SIGKILL, the OOM killer, a crash) stops
nothing, and the group would run on beside the job's retry, in the same workspace. So while a
phase runs, the worker keeps a record of its group in `<workdir>/.running` (a directory of the
worker's own, where phases can write nothing), and two others end what a dead worker's records
name: its guard (`helix.worker.guard`), at once, and the next worker started on the workdir.

A record is held with flock for as long as its group runs: the kernel lets go of it when the
worker dies, however it dies, so a record that nobody holds is a dead worker's, and the phases
of a live worker on the same workdir are never touched. It names the group (its pgid), when its
leader started and in which boot (so that a pid the kernel gave to another process since is not
taken for it), and the uid the phase ran as: only that user's processes are killed.

Linux only (`helix.worker.procfs`): elsewhere nothing is recorded as running, and nothing ended.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import attrs

from helix.worker import procfs

log = logging.getLogger(__name__)

DIRECTORY = ".running"
_SUFFIX = ".json"


@attrs.frozen(kw_only=True)
class GroupRecord:
    pgid: int
    start: int  # the leader's start time, in clock ticks after boot
    boot_id: str
    uid: int
    owner: int  # the worker's pid
    argv0: str
    cwd: str


class Held:
    """A record of a running group, held until `remove()` (or the worker's end)."""

    def __init__(self, path: Path, fd: int) -> None:
        self._path = path
        self._fd: int | None = fd

    def remove(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        os.close(fd)


def directory(workdir: Path) -> Path:
    """Where a worker on `workdir` records its running groups (created, mode 0700)."""
    path = workdir / DIRECTORY
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def record(where: Path, pgid: int, *, uid: int, argv0: str, cwd: Path) -> Held | None:
    """Record the running group `pgid` in `where`; None when its leader is already gone (or
    there is no /proc to tell when it started)."""
    leader = procfs.stat_of(pgid)
    if leader is None:
        return None
    found = GroupRecord(
        pgid=pgid,
        start=leader.start,
        boot_id=procfs.boot_id(),
        uid=uid,
        owner=os.getpid(),
        argv0=argv0,
        cwd=str(cwd),
    )
    final = where / f"{pgid}{_SUFFIX}"
    # Written aside, locked, then renamed into place: a record anyone can see is already held.
    partial = where / f".{pgid}.partial"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(partial, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(attrs.asdict(found)).encode())
        os.rename(partial, final)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    return Held(final, fd)


def end_leftovers(where: Path, *, owner: int | None = None) -> list[GroupRecord]:
    """Kill the groups recorded in `where` by workers that are gone, and drop their records;
    the records of the groups it killed. `owner`: only that (dead) worker's records, held or
    not (its guard may look before the kernel has let go of them)."""
    ended = []
    for path, fd in _records(where, held_too=owner is not None):
        try:
            found = _read(fd)
            if found is not None and owner is not None and found.owner != owner:
                continue
            if found is not None and _kill(found):
                ended.append(found)
                log.warning(
                    "killed process group %d (%s in %s) that worker process %d left running",
                    found.pgid,
                    found.argv0,
                    found.cwd,
                    found.owner,
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        finally:
            os.close(fd)
    return ended


def _records(where: Path, *, held_too: bool) -> Iterator[tuple[Path, int]]:
    try:
        names = sorted(os.listdir(where))
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(_SUFFIX):
            continue
        try:
            fd = os.open(where / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # removed meanwhile by the worker that held it
        if not held_too:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live worker's running phase
                continue
        yield where / name, fd


def _read(fd: int) -> GroupRecord | None:
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            return GroupRecord(**json.loads(f.read()))
    except (ValueError, TypeError) as exc:
        log.warning("ignoring an unreadable record of a running phase: %s", exc)
        return None


def _kill(found: GroupRecord) -> bool:
    """SIGKILL to the recorded group if it still runs, as recorded; whether it did."""
    if found.boot_id != procfs.boot_id():
        return False
    leader = procfs.stat_of(found.pgid)
    if leader is not None and leader.start != found.start:
        return False  # the pid is another process's now, and the group that one's
    # While any process of a group lives, the kernel gives its pgid to no new process: with the
    # leader gone, the processes left in the group are still the phase's.
    members = procfs.group_members(found.pgid)
    if not members or not all(_runs_as(m.pid, found.uid) for m in members):
        return False
    try:
        os.killpg(found.pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _runs_as(pid: int, uid: int) -> bool:
    status = procfs.status_of(pid)
    return status is None or uid in status.uids
