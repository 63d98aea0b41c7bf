"""`helix bench jobs` as an operator runs it: tiny counts, the shape of what it prints (its
figures are a benchmark's, never checked here)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

PEER = importlib.util.find_spec("procrastinate") is not None
ROWS = (
    "jobs/s, 1 worker",
    "jobs/s, 8 workers",
    "execute -> completed p50 ms",
    "execute -> completed p99 ms",
    "statements per job, k8",
    "transactions per job, k8",
    "server statements/job, k8",
    "WAL records per job, k8",
)
NUMBER = r"\d+\.\d"


def test_the_jobs_benchmark_prints_every_figure_and_ends_with_the_k8_ratio(pg_url: str) -> None:
    argv = [sys.executable, "-m", "helix.cli", "bench", "jobs", "--jobs", "3"]
    argv += ["--latency-samples", "2"] + ([] if PEER else ["--no-peer"])
    env = {**os.environ, "HELIX_DATABASE_URL": pg_url}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    for label in ROWS:
        (row,) = [line for line in lines if line.startswith(label)]
        figures = row[len(label) :].split()
        assert re.fullmatch(NUMBER + r"\d*", figures[0]), row
        if PEER:
            assert all(re.fullmatch(NUMBER + r"\d*", f) for f in figures[:3]), row
    if PEER:
        assert re.fullmatch(r"jobs ratio k8: \d+\.\d\d", lines[-1]), lines[-1]
    else:
        assert lines[-1] == "jobs ratio k8: - (no peer)"
