"""What the worker reads of a phase's resource usage from /proc and wait4."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helix.worker import usage
from helix.worker.usage import Meter, Usage

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux's /proc")


def test_a_process_s_figures_come_from_its_stat_status_and_io() -> None:
    payload = bytearray(32 * 2**20)  # resident: written to
    for i in range(0, len(payload), 4096):
        payload[i] = 1
    mine = usage.of_process(os.getpid())
    assert mine is not None
    assert mine.cpu_s > 0
    assert mine.max_rss_bytes >= 32 * 2**20
    assert mine.read_bytes > 0  # this test's modules, at least
    assert usage.of_process(2**22 + 1) is None  # above pid_max: no such process


def test_a_group_s_sample_sums_its_members_and_covers_the_children_they_waited_for() -> None:
    child = subprocess.run(
        [sys.executable, "-c", "import time; t = time.process_time()\n"
         "while time.process_time() - t < 0.2: pass"],
        check=True,
    )  # fmt: skip
    assert child.returncode == 0
    group = usage.sample(os.getpgid(0))
    mine = usage.of_process(os.getpid())
    assert mine is not None
    # This process waited for the child: its CPU is in this process's figures, and the group's.
    assert mine.cpu_s >= 0.2
    assert group.cpu_s >= mine.cpu_s
    assert group.read_bytes >= mine.read_bytes


def test_a_meter_keeps_each_figure_at_the_largest_seen() -> None:
    meter = Meter()
    meter.add(Usage(cpu_s=1.0, max_rss_bytes=500, read_bytes=10, write_bytes=1))
    meter.add(Usage(cpu_s=0.5, max_rss_bytes=900, read_bytes=5, write_bytes=7))
    assert meter.usage == Usage(cpu_s=1.0, max_rss_bytes=900, read_bytes=10, write_bytes=7)
    assert meter.usage.fields() == {
        "cpu_s": 1.0, "max_rss_bytes": 900, "read_bytes": 10, "write_bytes": 7,
    }  # fmt: skip
