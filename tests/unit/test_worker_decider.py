"""The worker decider, without a database: registration, going offline, coming back, being
pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from helix.domain.worker import (
    INITIAL,
    MAX_HOSTNAME_CHARS,
    MAX_WORKER_NAME_CHARS,
    MarkOffline,
    MarkOnline,
    PruneWorker,
    RegisterWorker,
    WorkerCameOnline,
    WorkerPruned,
    WorkerRegistered,
    WorkerState,
    WorkerWentOffline,
    decide,
    fold,
)
from helix.errors import InvalidTransition, ValidationError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WORKER_ID = UUID("00000000-0000-4000-8000-0000000000b1")
USER_ID = UUID("00000000-0000-4000-8000-0000000000c1")


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def register(**changes: Any) -> RegisterWorker:
    fields: dict[str, Any] = {
        "worker_id": WORKER_ID,
        "user_id": USER_ID,
        "name": "runner-1",
        "hostname": "box",
        "capabilities": ("shell", "review"),
        "resources": {"cpus": 2},
        "at": at(),
    }
    return RegisterWorker(**{**fields, **changes})


def state_after(*commands: Any) -> WorkerState:
    state = INITIAL
    for command in commands:
        state = fold(decide(state, command), state)
    return state


def test_a_registration_records_the_worker_online_with_its_capabilities() -> None:
    events = decide(INITIAL, register(capabilities=(" shell ", "review", "shell", " ")))
    assert events == [
        WorkerRegistered(
            worker_id=WORKER_ID,
            user_id=USER_ID,
            name="runner-1",
            hostname="box",
            capabilities=("shell", "review"),
            resources={"cpus": 2},
            at=T0,
        )
    ]
    state = fold(events)
    assert (state.exists, state.online, state.capabilities) == (True, True, ("shell", "review"))
    assert (state.user_id, state.registered_at, state.resources) == (USER_ID, T0, {"cpus": 2})


def test_an_id_is_registered_only_once() -> None:
    with pytest.raises(InvalidTransition) as refused:
        decide(state_after(register()), register(name="again"))
    assert refused.value.details["reason"] == "already_registered"
    assert refused.value.current == "online"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capabilities": ()}, "capabilities"),
        ({"capabilities": (" ", "")}, "capabilities"),
        ({"capabilities": tuple(f"c{i}" for i in range(51))}, "capabilities"),
        ({"capabilities": ("x" * 101,)}, "capabilities"),
        ({"name": " "}, "name"),
        ({"name": "n" * (MAX_WORKER_NAME_CHARS + 1)}, "name"),
        ({"hostname": ""}, "hostname"),
        ({"hostname": "h" * (MAX_HOSTNAME_CHARS + 1)}, "hostname"),
        ({"at": datetime(2026, 3, 1, 9, 0)}, "at"),
    ],
)
def test_a_bad_registration_is_refused_as_invalid(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        decide(INITIAL, register(**changes))
    assert refused.value.details["field"] == field


def test_a_silent_worker_goes_offline_and_a_sign_of_life_brings_it_back() -> None:
    registered = state_after(register())
    offline = decide(registered, MarkOffline(last_heartbeat_at=at(1), at=at(30)))
    assert offline == [WorkerWentOffline(worker_id=WORKER_ID, last_heartbeat_at=at(1), at=at(30))]
    state = fold(offline, registered)
    assert (state.online, state.offline_since) == (False, at(30))
    back = decide(state, MarkOnline(at=at(40)))
    assert back == [WorkerCameOnline(worker_id=WORKER_ID, at=at(40))]
    state = fold(back, state)
    assert (state.online, state.offline_since) == (True, None)
    assert state.capabilities == ("shell", "review")  # the registration stands


def test_times_are_recorded_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    state = state_after(register())
    [event] = decide(
        state,
        MarkOffline(last_heartbeat_at=at(1).astimezone(plus_two), at=at(9).astimezone(plus_two)),
    )
    assert isinstance(event, WorkerWentOffline)
    assert (event.at.tzinfo, event.last_heartbeat_at.tzinfo) == (UTC, UTC)


def test_each_change_is_recorded_once() -> None:
    online = state_after(register())
    with pytest.raises(InvalidTransition) as refused:
        decide(online, MarkOnline(at=at(5)))
    assert (refused.value.details["reason"], refused.value.current) == ("already_online", "online")
    offline = state_after(register(), MarkOffline(last_heartbeat_at=at(1), at=at(9)))
    with pytest.raises(InvalidTransition) as refused:
        decide(offline, MarkOffline(last_heartbeat_at=at(1), at=at(19)))
    assert refused.value.details["reason"] == "already_offline"
    assert refused.value.current == "offline"


@pytest.mark.parametrize(
    "command", [MarkOffline(last_heartbeat_at=T0, at=T0), MarkOnline(at=T0), PruneWorker(at=T0)]
)
def test_an_unregistered_worker_refuses_everything_but_registration(command: Any) -> None:
    with pytest.raises(InvalidTransition) as refused:
        decide(INITIAL, command)
    assert (refused.value.details["reason"], refused.value.current) == ("not_found", None)


def test_only_an_offline_worker_is_pruned_and_a_pruned_one_takes_no_command() -> None:
    online = state_after(register())
    with pytest.raises(InvalidTransition) as refused:
        decide(online, PruneWorker(at=at(5)))
    assert (refused.value.details["reason"], refused.value.current) == ("online", "online")

    offline = state_after(register(), MarkOffline(last_heartbeat_at=at(1), at=at(9)))
    assert decide(offline, PruneWorker(at=at(99))) == [WorkerPruned(worker_id=WORKER_ID, at=at(99))]
    pruned = state_after(
        register(), MarkOffline(last_heartbeat_at=at(1), at=at(9)), PruneWorker(at=at(99))
    )
    assert pruned.pruned and not pruned.online
    for command in (
        MarkOnline(at=at(100)),
        MarkOffline(last_heartbeat_at=at(1), at=at(100)),
        PruneWorker(at=at(100)),
    ):
        with pytest.raises(InvalidTransition) as refused:
            decide(pruned, command)
        assert (refused.value.details["reason"], refused.value.current) == ("pruned", "pruned")
    with pytest.raises(InvalidTransition) as refused:
        decide(pruned, register(at=at(100)))
    assert refused.value.details["reason"] == "already_registered"
