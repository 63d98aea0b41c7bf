"""Where a benchmark's CPU time went: this process, a helper process, and the PostgreSQL
backends serving one database, read from /proc. On a system without /proc, or with the
server on another machine, the groups that cannot be seen read as None."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import attrs

PROC = Path("/proc")


@attrs.frozen
class CpuTimes:
    """CPU seconds (user and system) used so far."""

    client: float
    database: float | None
    helper: float | None

    def __sub__(self, earlier: CpuTimes) -> CpuTimes:
        return CpuTimes(
            client=self.client - earlier.client,
            database=_minus(self.database, earlier.database),
            helper=_minus(self.helper, earlier.helper),
        )

    def per_event_us(self, events: float) -> str:
        """`client / PostgreSQL / helper` in microseconds per event, `-` where unknown."""
        return " / ".join(
            "-" if seconds is None else f"{seconds / events * 1e6:.0f}"
            for seconds in (self.client, self.database, self.helper)
        )


def _minus(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def _process_seconds(stat: str) -> float:
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and
    # 13th, in clock ticks.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds_of(pid: int) -> float | None:
    try:
        return _process_seconds((PROC / str(pid) / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None


def database_seconds(database: str) -> float | None:
    """CPU seconds of the live server processes titled with `database` (its backends and
    autovacuum workers); None if there are none to see."""
    if not PROC.is_dir():
        return None
    marker = f" {database} ".encode()
    total, seen = 0.0, False
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if not title.startswith(b"postgres: ") or marker not in title + b" ":
                continue
            total += _process_seconds((entry / "stat").read_text())
            seen = True
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return total if seen else None


def sample(database: str, helper_pid: int | None = None) -> CpuTimes:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuTimes(
        client=usage.ru_utime + usage.ru_stime,
        database=database_seconds(database),
        helper=None if helper_pid is None else _seconds_of(helper_pid),
    )
