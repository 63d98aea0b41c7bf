"""What a phase's processes use: CPU time, peak memory and bytes read and written.

While the phase runs, its process group is sampled from `/proc` (`sample`). A process's figures
there include those of the children it has waited for, so the sum over the group's live
processes grows steadily as processes end and are reaped by their parents in the group. When
the group's leader exits, its figures are read once more while it is a zombie (`/proc` still
holds them; nothing has reaped it) and its `wait4` resource usage is taken as it is reaped: CPU
time exactly, for the leader and every descendant waited for, and peak memory when it is
above the worker's own (at exec a process keeps its forker's peak, so a smaller figure may be
the worker's and is not used).

What each figure is:
- `cpu_s`: user and system CPU seconds.
- `max_rss_bytes`: the largest resident memory seen: of one process alive at a sample (its
  high-water mark, so also between samples), of the group's processes together at a sample,
  or the leader's exit figure when it is above the worker's own. A phase shorter than the
  first sample and smaller than the worker shows 0: not measured.
- `read_bytes`, `write_bytes`: bytes passed through read and write system calls (files,
  pipes, sockets; `rchar` and `wchar` of /proc/<pid>/io), whether or not they reached a disk.

A process that leaves the group (setsid) is not counted after it leaves, nor is one whose
parent ended before it (it is reaped outside the group). Elsewhere than Linux there is no
`/proc`: only what `wait4` gives at the end is known.
"""

from __future__ import annotations

import contextlib
import os
import resource

import attrs

from helix.worker import procfs

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@attrs.frozen
class Usage:
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    read_bytes: int = 0
    write_bytes: int = 0

    def most(self, other: Usage) -> Usage:
        """Each figure at the larger of the two: every figure only ever grows."""
        return Usage(
            cpu_s=max(self.cpu_s, other.cpu_s),
            max_rss_bytes=max(self.max_rss_bytes, other.max_rss_bytes),
            read_bytes=max(self.read_bytes, other.read_bytes),
            write_bytes=max(self.write_bytes, other.write_bytes),
        )

    def fields(self) -> dict[str, float | int]:
        return {
            "cpu_s": round(self.cpu_s, 3),
            "max_rss_bytes": self.max_rss_bytes,
            "read_bytes": self.read_bytes,
            "write_bytes": self.write_bytes,
        }


@attrs.frozen
class _Process:
    cpu_s: float
    rss: int  # resident now
    peak: int  # its high-water mark
    read: int
    written: int


def _read(pid: int) -> _Process | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        # After the name: utime, stime, cutime, cstime are fields 14-17 of the line, rss 24.
        ticks = sum(int(n) for n in fields[11:15])
        rss = int(fields[21]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
    read = written = 0
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io", "rb") as f:
        for line in f:
            name, _, value = line.partition(b":")
            if name == b"rchar":
                read = int(value)
            elif name == b"wchar":
                written = int(value)
    return _Process(ticks / _TICKS, rss, _high_water(pid), read, written)


def _high_water(pid: int | str) -> int:
    """VmHWM: the peak resident memory of the process's current program (0: unknown, as for a
    zombie)."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def own_high_water() -> int:
    return _high_water("self")


def of_process(pid: int) -> Usage | None:
    """One process's figures (with the children it waited for); None once it is gone."""
    found = _read(pid)
    if found is None:
        return None
    return Usage(found.cpu_s, max(found.rss, found.peak), found.read, found.written)


def sample(pgid: int) -> Usage:
    """The process group's figures now: CPU and bytes summed over its processes; memory the
    larger of their resident memory together and the highest peak of one of them."""
    found = [p for p in (_read(s.pid) for s in procfs.group_members(pgid)) if p is not None]
    return Usage(
        cpu_s=sum(p.cpu_s for p in found),
        max_rss_bytes=max([sum(p.rss for p in found), *(p.peak for p in found)]),
        read_bytes=sum(p.read for p in found),
        write_bytes=sum(p.written for p in found),
    )


def of_rusage(used: resource.struct_rusage, ceiling: int) -> Usage:
    """What `wait4` says of a reaped leader and the descendants it waited for. CPU time is
    exact. The peak (Linux gives KiB) is the leader's own only above `ceiling`, the worker's
    peak when it started the leader: at exec the kernel keeps the forking process's peak as
    the new program's, so below that the figure may be the worker's, and says nothing."""
    peak = used.ru_maxrss * 1024
    return Usage(cpu_s=used.ru_utime + used.ru_stime, max_rss_bytes=peak if peak > ceiling else 0)


class Meter:
    """The figures of one phase run so far: samples and the leader's last word, each figure
    the largest seen."""

    def __init__(self) -> None:
        self.usage = Usage()

    def add(self, usage: Usage) -> Usage:
        self.usage = self.usage.most(usage)
        return self.usage
