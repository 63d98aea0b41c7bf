"""The worker aggregate as a decider: `decide(state, command) -> events`, `evolve(state, event)`.

    (none) ──RegisterWorker──▶ online ──MarkOffline──▶ offline ──MarkOnline──▶ online …
                                                      offline ──PruneWorker──▶ pruned (final)

A worker id is registered once. Going offline and coming back are refused when the worker is
already there, so each change is recorded once; the callers decide them only on a change.
Only an offline worker is pruned, and a pruned one takes no command: a process that comes
back after it was pruned registers anew, under a new id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NoReturn, assert_never
from uuid import UUID

import attrs

from helix.domain.project.decider import (
    MAX_CAPABILITIES,
    MAX_CAPABILITY_CHARS,
    as_utc,
    check_text,
)
from helix.domain.worker.commands import (
    Command,
    MarkOffline,
    MarkOnline,
    PruneWorker,
    RegisterWorker,
)
from helix.domain.worker.events import (
    Event,
    WorkerCameOnline,
    WorkerPruned,
    WorkerRegistered,
    WorkerWentOffline,
)
from helix.errors import InvalidTransition, ValidationError

# A worker's name and hostname are only shown, never matched: bounded for display alone.
MAX_WORKER_NAME_CHARS = 200
MAX_HOSTNAME_CHARS = 255


@attrs.frozen(kw_only=True)
class WorkerState:
    """A worker folded from its events; `worker_id is None` means it is not registered."""

    worker_id: UUID | None = None
    user_id: UUID | None = None
    name: str = ""
    hostname: str = ""
    capabilities: tuple[str, ...] = ()
    resources: dict[str, Any] = attrs.field(factory=dict)  # as registered
    online: bool = False
    registered_at: datetime | None = None
    offline_since: datetime | None = None
    pruned: bool = False

    @property
    def exists(self) -> bool:
        return self.worker_id is not None


INITIAL = WorkerState()


def fold(events: Iterable[Event], state: WorkerState = INITIAL) -> WorkerState:
    for event in events:
        state = evolve(state, event)
    return state


def evolve(state: WorkerState, event: Event) -> WorkerState:
    match event:
        case WorkerRegistered():
            return WorkerState(
                worker_id=event.worker_id,
                user_id=event.user_id,
                name=event.name,
                hostname=event.hostname,
                capabilities=tuple(event.capabilities),
                resources=dict(event.resources),
                online=True,
                registered_at=event.at,
            )
        case WorkerWentOffline():
            return attrs.evolve(state, online=False, offline_since=event.at)
        case WorkerCameOnline():
            return attrs.evolve(state, online=True, offline_since=None)
        case WorkerPruned():
            return attrs.evolve(state, online=False, pruned=True)
        case _:
            assert_never(event)


def _refuse(state: WorkerState, message: str, reason: str) -> NoReturn:
    current = None
    if state.exists:
        current = "pruned" if state.pruned else ("online" if state.online else "offline")
    raise InvalidTransition(message, current=current, reason=reason)


def normalise_capabilities(capabilities: Iterable[str]) -> tuple[str, ...]:
    """The capabilities stripped, each once, in order; at least one, each within bounds."""
    caps = tuple(dict.fromkeys(c.strip() for c in capabilities if c.strip()))
    if not caps:
        raise ValidationError("a worker needs at least one capability", field="capabilities")
    if len(caps) > MAX_CAPABILITIES:
        raise ValidationError(
            f"a worker has at most {MAX_CAPABILITIES} capabilities", field="capabilities"
        )
    for capability in caps:
        check_text(capability, "capabilities", max_chars=MAX_CAPABILITY_CHARS)
    return caps


def decide(state: WorkerState, command: Command) -> list[Event]:
    """The events that `command` causes, or InvalidTransition / ValidationError."""
    at = as_utc(command.at)
    match command:
        case RegisterWorker():
            if state.exists:
                _refuse(state, "this worker is already registered", "already_registered")
            return [
                WorkerRegistered(
                    worker_id=command.worker_id,
                    user_id=command.user_id,
                    name=check_text(command.name, "name", max_chars=MAX_WORKER_NAME_CHARS),
                    hostname=check_text(command.hostname, "hostname", max_chars=MAX_HOSTNAME_CHARS),
                    capabilities=normalise_capabilities(command.capabilities),
                    resources=dict(command.resources),
                    at=at,
                )
            ]
        case MarkOffline():
            worker_id = _registered(state)
            if not state.online:
                _refuse(state, "this worker is already offline", "already_offline")
            last = as_utc(command.last_heartbeat_at, "last_heartbeat_at")
            return [WorkerWentOffline(worker_id=worker_id, last_heartbeat_at=last, at=at)]
        case MarkOnline():
            worker_id = _registered(state)
            if state.online:
                _refuse(state, "this worker is already online", "already_online")
            return [WorkerCameOnline(worker_id=worker_id, at=at)]
        case PruneWorker():
            worker_id = _registered(state)
            if state.online:
                _refuse(state, "an online worker is not pruned", "online")
            return [WorkerPruned(worker_id=worker_id, at=at)]
        case _:
            assert_never(command)


def _registered(state: WorkerState) -> UUID:
    if state.worker_id is None:
        _refuse(state, "worker does not exist", "not_found")
    if state.pruned:
        _refuse(state, "this worker was pruned", "pruned")
    return state.worker_id
