"""What Linux's `/proc` says of a process: its state, process group, start time and users.

Elsewhere there is no `/proc`: nothing is found, and what the worker does with what it finds
(ending the processes its phases left behind) does not happen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import attrs

_GONE = frozenset({"Z", "X"})


@attrs.frozen
class Stat:
    pid: int
    state: str
    pgrp: int
    # Clock ticks after boot: with the boot, what tells this process from a later one that
    # was given the same pid.
    start: int

    @property
    def alive(self) -> bool:
        return self.state not in _GONE


@attrs.frozen
class Status:
    state: str
    uids: tuple[int, int]  # real, effective
    threads: int

    @property
    def alive(self) -> bool:
        # A zombie counts while threads of it still run (its leader exited before them).
        return self.state not in _GONE or self.threads > 1


def pids() -> Iterator[int]:
    if not os.path.isdir("/proc"):
        return
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def stat_of(pid: int) -> Stat | None:
    """What /proc/<pid>/stat says; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # After the command name in parentheses (which may hold anything, ')' too): state, ppid,
    # pgrp, ..., and starttime as the 20th field after the name.
    fields = raw.rpartition(b")")[2].split()
    try:
        return Stat(pid=pid, state=fields[0].decode(), pgrp=int(fields[2]), start=int(fields[19]))
    except (IndexError, ValueError):
        return None


def status_of(pid: int) -> Status | None:
    """What /proc/<pid>/status says; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        real, effective = (int(n) for n in fields[b"Uid"].split()[:2])
        return Status(
            state=fields[b"State"].split()[0].decode(),
            uids=(real, effective),
            threads=int(fields[b"Threads"]),
        )
    except (OSError, KeyError, ValueError):
        return None


def group_members(pgid: int) -> list[Stat]:
    """The processes of the process group `pgid` that still run (zombies do not: where init
    does not reap orphans, as in many containers, an orphan that has exited stays one)."""
    found = []
    for pid in pids():
        stat = stat_of(pid)
        if stat is not None and stat.pgrp == pgid and stat.alive:
            found.append(stat)
    return found


def boot_id() -> str:
    """This boot's id: a process's start time means nothing across a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
