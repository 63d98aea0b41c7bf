"""What a phase's processes use: CPU time, peak memory and bytes read and written.

While the phase runs, its process group is sampled from `/proc` (`sample`). A process's figures
there include those of the children it has waited for, so the sum over the group's live
processes grows steadily as processes end and are reaped by their parents in the group. When
the group's leader exits, its figures are read once more while it is a zombie (`/proc` still
holds them; nothing has reaped it) and its `wait4` resource usage is taken as it is reaped: CPU
time and peak memory exactly, for the leader and every descendant waited for.

What each figure is:
- `cpu_s`: user and system CPU seconds.
- `max_rss_bytes`: the largest resident memory seen: of one process (its high-water mark,
  between samples too), or of the group's processes together at a sample.
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
from collections.abc import Iterable

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


def of_process(pid: int) -> Usage | None:
    """One process's figures (with the children it waited for); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        # After the name: utime, stime, cutime, cstime are fields 14-17 of the line, rss 24.
        ticks = sum(int(n) for n in fields[11:15])
        rss = int(fields[21]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
    high = 0
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                high = int(line.split()[1]) * 1024
                break
    read = written = 0
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/io", "rb") as f:
        for line in f:
            name, _, value = line.partition(b":")
            if name == b"rchar":
                read = int(value)
            elif name == b"wchar":
                written = int(value)
    return Usage(
        cpu_s=ticks / _TICKS, max_rss_bytes=max(rss, high), read_bytes=read, write_bytes=written
    )


def _together(members: Iterable[Usage]) -> Usage:
    cpu = 0.0
    rss = high = read = written = 0
    for usage in members:
        cpu += usage.cpu_s
        rss += usage.max_rss_bytes
        high = max(high, usage.max_rss_bytes)
        read += usage.read_bytes
        written += usage.write_bytes
    return Usage(cpu_s=cpu, max_rss_bytes=max(rss, high), read_bytes=read, write_bytes=written)


def sample(pgid: int) -> Usage:
    """The process group's figures now (its processes' own, summed)."""
    found = (of_process(stat.pid) for stat in procfs.group_members(pgid))
    return _together(usage for usage in found if usage is not None)


def of_rusage(used: resource.struct_rusage) -> Usage:
    """What `wait4` says of a reaped process and the descendants it waited for (Linux gives
    the peak in KiB)."""
    return Usage(cpu_s=used.ru_utime + used.ru_stime, max_rss_bytes=used.ru_maxrss * 1024)


class Meter:
    """The figures of one phase run so far: samples and the leader's last word, each figure
    the largest seen."""

    def __init__(self) -> None:
        self.usage = Usage()

    def add(self, usage: Usage) -> Usage:
        self.usage = self.usage.most(usage)
        return self.usage
