"""The reports a worker sends about a job, and their packing into requests the server accepts."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Iterator, Sequence

from helix.domain.project.decider import MAX_REASON_CHARS
from helix.worker.protocol import Report
from helix.worker.usage import Usage
from helix.worker.workspace import FileRecord

MAX_REPORTS_PER_REQUEST = 1000
MAX_LINES_PER_REPORT = 1000
MAX_LINE_CHARS = 16_384
MAX_STDERR_TAIL_LINES = 200
# The server takes bodies up to 1 MiB; half of that leaves room for the envelope and any
# estimate that is a little off.
MAX_REQUEST_BYTES = 512 * 1024
_ENVELOPE_BYTES = 256


def phase_started(phase: str) -> Report:
    return {"type": "phase_started", "phase": phase}


def output(phase: str, stream: str, lines: Sequence[str]) -> Report:
    return {"type": "output", "phase": phase, "stream": stream, "lines": list(lines)}


def file(phase: str, record: FileRecord) -> Report:
    return {
        "type": "file",
        "phase": phase,
        "path": record.path,
        "size": record.size,
        "sha256": record.sha256,
        "change": record.change,
    }


def artifact_not_stored(phase: str, record: FileRecord, reason: str) -> Report:
    return {
        "type": "artifact_not_stored",
        "phase": phase,
        "path": record.path,
        "size": record.size,
        "sha256": record.sha256,
        "change": record.change,
        "reason": reason[:MAX_REASON_CHARS],
    }


def cost(phase: str, tokens: int, usd: float) -> Report:
    return {"type": "cost", "phase": phase, "tokens": tokens, "usd": usd}


def message(phase: str, content: str) -> Report:
    return {"type": "message", "phase": phase, "content": content}


def phase_resources(phase: str, used: Usage) -> Report:
    """What the phase's processes have used so far in this run (each figure a running total
    or peak, so a later report replaces an earlier one)."""
    return {"type": "phase_resources", "phase": phase, **used.fields()}


def progress(percent: int) -> Report:
    return {"type": "progress", "percent": max(0, min(100, percent))}


def phase_completed(phase: str) -> Report:
    return {"type": "phase_completed", "phase": phase, "exit_code": 0}


def phase_failed(
    phase: str, *, exit_code: int | None, error: str, stderr_tail: Sequence[str] = ()
) -> Report:
    return {
        "type": "phase_failed",
        "phase": phase,
        "exit_code": exit_code,
        "error": error,
        "stderr_tail": list(stderr_tail),
    }


def job_completed() -> Report:
    return {"type": "job_completed"}


def job_failed(error: str) -> Report:
    return {"type": "job_failed", "error": error}


def cancel_acknowledged() -> Report:
    return {"type": "cancel_acknowledged"}


def pause_acknowledged() -> Report:
    return {"type": "pause_acknowledged"}


def exit_error(exit_code: int) -> str:
    """Why a phase whose process ended with `exit_code` (negative: a signal) failed."""
    if exit_code >= 0:
        return f"exited with code {exit_code}"
    try:
        name = signal.Signals(-exit_code).name
    except ValueError:
        name = f"signal {-exit_code}"
    return f"killed by signal {name}"


def batches(
    reports: Iterable[Report],
    *,
    max_reports: int = MAX_REPORTS_PER_REQUEST,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[Report]]:
    """`reports`, in order, packed into requests of at most `max_reports` reports and about
    `max_bytes` bytes; an output report too large for one request is split into several."""
    budget = max_bytes - _ENVELOPE_BYTES
    packed: list[list[Report]] = []
    current: list[Report] = []
    size = 0
    for report in (piece for r in reports for piece in _fitted(r, budget)):
        n = _size(report) + 2
        if current and (len(current) >= max_reports or size + n > budget):
            packed.append(current)
            current, size = [], 0
        current.append(report)
        size += n
    if current:
        packed.append(current)
    return packed


def _fitted(report: Report, budget: int) -> Iterator[Report]:
    if report.get("type") != "output" or _size(report) <= budget:
        yield report
        return
    base = _size({**report, "lines": []})
    lines: list[str] = []
    size = base
    for line in report["lines"]:
        n = _size(line) + 2
        if lines and size + n > budget:
            yield {**report, "lines": lines}
            lines, size = [], base
        lines.append(line)
        size += n
    if lines:
        yield {**report, "lines": lines}


def _size(value: object) -> int:
    # The same encoding the client sends (ASCII JSON), so the count is the byte count.
    return len(json.dumps(value))
