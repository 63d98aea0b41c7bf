"""Time travel: a project or a job as it stood at a log position or an instant.

The state comes from folding the aggregate's own events with the decider's `fold`, never from
the read models, so it is what the log says, whatever the read models hold. Only sequenced
events count (those with a position), so an answer never changes once given: `as_of=<n>` folds
the stream's events at positions up to n, `as_of=<time>` those recorded at or before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import attrs

from helix.domain import job, project
from helix.domain.job import JobPhaseOutput, JobState, JobStatus, PhaseState, Resources
from helix.domain.project import ProjectState
from helix.envelope import rfc3339
from helix.errors import NotFound, ValidationError
from helix.eventstore import EventStore, RecordedEvent
from helix.eventstore.sql import QUERIES
from helix.inputs import parse_time
from helix.services.caller import Caller
from helix.services.views import (
    current_phase,
    ident,
    resources_view,
    stream_url,
    waiting_view,
)
from projections.seen import to_json

S = TypeVar("S")
MAX_POSITION = 2**62


@attrs.frozen
class AsOf:
    """A point of the log: a position, or an instant (exactly one of them is set)."""

    position: int | None = None
    time: datetime | None = None

    def json(self) -> dict[str, Any]:
        return {"position": self.position, "time": rfc3339(self.time)}


def parse_as_of(raw: str) -> AsOf:
    """`as_of` is a log position (a non-negative integer) or an RFC 3339 date-time."""
    text = raw
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > MAX_POSITION:
            raise ValidationError(f"'as_of' must be at most {MAX_POSITION}", field="as_of")
        return AsOf(position=value)
    if not text or text.lstrip("+-").isdigit():
        raise ValidationError(
            "'as_of' must be a log position (0 or more) or an RFC 3339 date-time",
            field="as_of",
        )
    return AsOf(time=parse_time(text, "as_of"))


@attrs.frozen(kw_only=True)
class Folded(Generic[S]):
    """An aggregate folded up to a point: its state, its stream version there, the position of
    the last event folded (0: none) and the decoded events."""

    state: S
    version: int
    position: int
    events: tuple[Any, ...]


async def stream_as_of(store: EventStore, stream_id: str, as_of: AsOf) -> list[RecordedEvent]:
    if as_of.position is not None:
        rows = await store.pool.fetch(QUERIES["stream_up_to_position"], stream_id, as_of.position)
    else:
        rows = await store.pool.fetch(QUERIES["stream_up_to_time"], stream_id, as_of.time)
    return [RecordedEvent.from_row(r) for r in rows]


def _folded(events: Sequence[RecordedEvent], decoded: tuple[Any, ...], state: S) -> Folded[S]:
    return Folded(
        state=state,
        version=events[-1].version if events else 0,
        position=(events[-1].position or 0) if events else 0,
        events=decoded,
    )


async def load_project(store: EventStore, project_id: UUID, as_of: AsOf) -> Folded[ProjectState]:
    events = await stream_as_of(store, project.stream_id(project_id), as_of)
    decoded = tuple(store.decode(e) for e in events)
    return _folded(events, decoded, project.fold(decoded))


async def load_job(store: EventStore, job_id: UUID, as_of: AsOf) -> Folded[JobState]:
    events = await stream_as_of(store, job.stream_id(job_id), as_of)
    decoded = tuple(store.decode(e) for e in events)
    return _folded(events, decoded, job.fold(decoded))


async def project_as_of(store: EventStore, project_id: UUID, as_of: AsOf) -> ProjectState | None:
    """The project folded from its events up to `as_of`; None if it did not exist then."""
    state = (await load_project(store, project_id, as_of)).state
    return state if state.exists else None


async def job_as_of(store: EventStore, job_id: UUID, as_of: AsOf) -> JobState | None:
    """The job folded from its events up to `as_of`; None if it did not exist then."""
    state = (await load_job(store, job_id, as_of)).state
    return state if state.exists else None


# --- the handlers' entry points: visibility, then the JSON of the folded state ---------------


async def project_at(
    store: EventStore, caller: Caller, project_id: UUID, as_of: AsOf
) -> dict[str, Any]:
    """The project's JSON as of a point, shaped like `GET /projects/{id}`; 404 if it did not
    exist then or the caller may not see it."""
    folded = await load_project(store, project_id, as_of)
    state = folded.state
    if not state.exists or not caller.may_see(state.owner):
        raise NotFound("project not found", project_id=str(project_id), as_of=as_of.json())
    latest = None
    if state.latest_job_id is not None:
        latest = await load_job(store, state.latest_job_id, as_of)
    return render_project(folded, latest, as_of)


async def job_at(
    store: EventStore, caller: Caller, job_id: UUID, as_of: AsOf, *, tail_lines: int = 20
) -> dict[str, Any]:
    """The job's JSON as of a point, shaped like `GET /jobs/{id}`; 404 if it did not exist
    then or the caller may not see it."""
    folded = await load_job(store, job_id, as_of)
    if not folded.state.exists or not caller.may_see(folded.state.owner):
        raise NotFound("job not found", job_id=str(job_id), as_of=as_of.json())
    return render_job(folded, as_of, tail_lines=tail_lines)


# --- JSON renderings -----------------------------------------------------------------------


def render_project(
    folded: Folded[ProjectState], latest: Folded[JobState] | None, as_of: AsOf
) -> dict[str, Any]:
    state = folded.state
    assert state.status is not None and state.id is not None
    latest_job = None
    if latest is not None and latest.state.exists:
        latest_job = job_summary(latest)
    return {
        "id": str(state.id),
        "name": state.name,
        "description": state.description,
        "project_type": state.project_type,
        "owner": state.owner,
        "status": state.status.value,
        "archived": state.archived,
        "phases": to_json(list(state.phases)),
        "latest_job_id": ident(state.latest_job_id),
        "message_count": len(state.messages),
        "max_job_duration": state.max_job_duration_s,
        "created_at": rfc3339(state.created_at),
        "updated_at": rfc3339(state.updated_at),
        "version": folded.version,
        "current_phase": _current_phase(latest.state) if latest is not None else None,
        "latest_job": latest_job,
        "as_of": {**as_of.json(), "last_position": folded.position},
    }


def job_summary(folded: Folded[JobState]) -> dict[str, Any]:
    """The fields of the jobs read model's view (`helix.services.views.job_view`)."""
    state = folded.state
    assert state.status is not None and state.id is not None
    return {
        "id": str(state.id),
        "project_id": ident(state.project_id),
        "owner": state.owner,
        "status": state.status.value,
        "start_phase": state.start_phase,
        "model": state.model,
        "requested_by": state.requested_by,
        "worker_id": state.worker_id,
        "attempt": state.attempt,
        "max_attempts": state.max_attempts,
        "max_duration_s": state.max_duration_s,
        "priority": state.priority.value,
        "progress": state.progress,
        "cost": {"tokens": state.cost_tokens, "usd": state.cost_usd},
        "error": state.error,
        "cancel_requested": state.cancel_requested,
        "cancel_reason": state.cancel_reason,
        "pause_requested": state.pause_requested,
        # As the log said it then (`job.waiting`): which workers were online is not in the log.
        "waiting": waiting_view(state.waiting if state.status is JobStatus.QUEUED else None),
        "dead_lettered": state.dead_lettered,
        "lease_expires_at": rfc3339(state.lease_expires_at),
        "not_before": rfc3339(state.not_before),
        "created_at": rfc3339(state.created_at),
        "started_at": rfc3339(state.started_at),
        "finished_at": rfc3339(state.finished_at),
        "updated_at": rfc3339(state.updated_at),
        "version": folded.version,
        "stream_url": stream_url(state.id),
    }


def render_job(folded: Folded[JobState], as_of: AsOf, *, tail_lines: int = 20) -> dict[str, Any]:
    view = job_summary(folded)
    view["phases"] = [
        phase_json(p, ordinal) for ordinal, p in enumerate(folded.state.phases, start=1)
    ]
    view["resources"] = resources_view(Resources.total(p.resources for p in folded.state.phases))
    view["current_phase"] = _current_phase(folded.state)
    view["output_tail"] = output_tail(folded.events, tail_lines)
    view["as_of"] = {**as_of.json(), "last_position": folded.position}
    return view


def phase_json(phase: PhaseState, ordinal: int) -> dict[str, Any]:
    started, finished = phase.started_at, phase.finished_at
    return {
        "name": phase.name,
        "ordinal": ordinal,
        "status": phase.status.value,
        "command": None if phase.command is None else list(phase.command),
        "timeout_s": phase.timeout_s,
        "capabilities": list(phase.capabilities),
        "started_at": rfc3339(started),
        "finished_at": rfc3339(finished),
        "duration_s": (finished - started).total_seconds() if started and finished else None,
        "output_lines": phase.output_lines,
        "files": [f.fields() for f in phase.files],
        "cost": {"tokens": phase.cost_tokens, "usd": phase.cost_usd},
        "resources": resources_view(phase.resources),
        "exit_code": phase.exit_code,
        "error": phase.error,
        "skip_reason": phase.skip_reason,
    }


def output_tail(events: Sequence[Any], lines: int) -> list[dict[str, Any]]:
    """The last `lines` output lines, numbered job-wide (`n`) as the output read model does."""
    if lines <= 0:
        return []
    tail: deque[dict[str, Any]] = deque(maxlen=lines)
    n = 0
    for event in events:
        if not isinstance(event, JobPhaseOutput):
            continue
        for offset, line in enumerate(event.lines):
            n += 1
            tail.append(
                {
                    "n": n,
                    "phase": event.phase,
                    "line_no": event.first_line_no + offset,
                    "attempt": event.attempt,
                    "stream": event.stream.value,
                    "line": line,
                    "at": rfc3339(event.at),
                }
            )
    return list(tail)


def _current_phase(state: JobState) -> str | None:
    if state.status is None:
        return None
    phases: list[Mapping[str, Any]] = [
        {"name": p.name, "status": p.status.value} for p in state.phases
    ]
    return current_phase({"status": state.status.value}, phases)
