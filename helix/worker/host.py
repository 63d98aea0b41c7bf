"""What a worker tells the server about the machine it runs on."""

from __future__ import annotations

import contextlib
import os
from typing import Any


def resources() -> dict[str, Any]:
    """CPUs, load average and memory, each only where it is cheap to learn."""
    found: dict[str, Any] = {"cpus": os.cpu_count() or 1}
    with contextlib.suppress(OSError, AttributeError):
        found["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, ValueError, AttributeError):
        found["memory_mb"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                found["memory_available_mb"] = int(line.split()[1]) // 1024
                break
    return found
