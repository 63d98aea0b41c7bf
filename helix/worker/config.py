"""A worker's options: where the server is, what it can run, how it batches and stops."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

import attrs
from attrs import validators as v

from helix.system_users import PHASE_USER
from helix.worker.directives import OutputFilter
from helix.worker.reports import MAX_LINES_PER_REPORT, MAX_STDERR_TAIL_LINES

MAX_CLAIM_WAIT_S = 60
CLAIM_WAIT_S = 20  # the default long-poll of a claim


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be more than 0, not {value!r}")


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    """Capabilities as a tuple of names, from an iterable or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(name.strip() for name in items if name.strip())


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _output_filter(
    instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    OutputFilter.of(value)  # UnsafePattern (a ValueError) names the pattern refused


def _argv(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _program(
    instance: object,
    attribute: attrs.Attribute[tuple[str, ...] | None],
    value: tuple[str, ...] | None,
) -> None:
    if value is not None and not (value and value[0].strip()):
        raise ValueError(f"{attribute.name} must name a program")


def _without_trailing_slash(url: str) -> str:
    return url.rstrip("/")


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """Everything `helix worker` takes as options; `Worker` runs with one."""

    server: str = attrs.field(converter=_without_trailing_slash)
    key: str = attrs.field(repr=False, validator=v.min_len(1))
    capabilities: tuple[str, ...] = attrs.field(
        default=("shell",), converter=_names, validator=v.min_len(1)
    )
    name: str = attrs.field(factory=socket.gethostname)
    # Each project's workspace is `<workdir>/<project_id>`.
    workdir: Path = attrs.field(default=Path(".helix/workspaces"), converter=Path)
    # Who phases run as when the worker runs as root (created when missing).
    phase_user: str = attrs.field(default=PHASE_USER, validator=v.min_len(1))
    lines_per_event: int = attrs.field(default=100, validator=[v.ge(1), v.le(MAX_LINES_PER_REPORT)])
    flush_interval: float = attrs.field(default=0.5, validator=_positive)
    # None: the interval the server asks for when the worker registers.
    heartbeat_interval: float | None = attrs.field(default=None, validator=v.optional(_positive))
    claim_wait: int = attrs.field(default=CLAIM_WAIT_S, validator=[v.ge(0), v.le(MAX_CLAIM_WAIT_S)])
    stderr_tail: int = attrs.field(default=20, validator=[v.ge(0), v.le(MAX_STDERR_TAIL_LINES)])
    kill_grace: float = attrs.field(default=5.0, validator=v.ge(0))
    # Regular expressions of output lines to drop (`helix.worker.directives`).
    output_filter: tuple[str, ...] = attrs.field(
        default=(), converter=_patterns, validator=_output_filter
    )
    # Run for each phase without a command of its own (None: such a phase fails here): a coding
    # agent's command line, which gets the phase's prompt, the job's model and the context file
    # in HELIX_PROMPT, HELIX_MODEL and HELIX_CONTEXT_FILE as every phase does.
    agent_command: tuple[str, ...] | None = attrs.field(
        default=None, converter=_argv, validator=_program
    )
    once: bool = False
    max_jobs: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
