"""The webhook endpoint decider, without a database: each command's effect and each refusal."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from helix.domain.webhook import (
    INITIAL,
    MAX_DESCRIPTION_CHARS,
    MAX_URL_CHARS,
    Command,
    CreateEndpoint,
    DeleteEndpoint,
    DisabledReason,
    DisableEndpoint,
    EnableEndpoint,
    EndpointState,
    RotateSecret,
    UpdateEndpoint,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
    decide,
    fold,
)
from helix.errors import InvalidTransition, NotFound, ValidationError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ENDPOINT = UUID("00000000-0000-4000-8000-0000000000e1")
OWNER = UUID("00000000-0000-4000-8000-0000000000b1")


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def create(**changes: typing.Any) -> CreateEndpoint:
    fields: dict[str, typing.Any] = {
        "endpoint_id": ENDPOINT,
        "owner": OWNER,
        "url": "https://hooks.example/helix",
        "event_types": ("job.*",),
        "description": "CI",
        "after_position": 41,
        "at": at(),
    }
    return CreateEndpoint(**{**fields, **changes})


def run(*commands: Command, state: EndpointState = INITIAL) -> EndpointState:
    for command in commands:
        state = fold(decide(state, command), state)
    return state


CREATED = run(create())


def test_creating_an_endpoint_records_everything_but_its_secret_and_the_head_it_starts_after() -> (
    None
):
    [event] = decide(INITIAL, create(event_types=("job.*", "job.*", "project.created")))
    assert event == WebhookCreated(
        endpoint_id=ENDPOINT, owner=OWNER, url="https://hooks.example/helix",
        event_types=("job.*", "project.created"), description="CI", enabled=True,
        after_position=41, at=at(),
    )  # fmt: skip
    state = fold([event])
    assert state.live and state.enabled and state.owner == OWNER
    assert state.event_types == ("job.*", "project.created")


def test_an_endpoint_is_created_once() -> None:
    with pytest.raises(InvalidTransition) as refused:
        decide(CREATED, create())
    assert refused.value.details["current_state"]["endpoint_id"] == str(ENDPOINT)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_types": ()}, "event_types"),
        ({"event_types": ("job.[x]",)}, "event_types"),
        ({"url": ""}, "url"),
        ({"url": "https://x.example/" + "a" * MAX_URL_CHARS}, "url"),
        ({"description": "d" * (MAX_DESCRIPTION_CHARS + 1)}, "description"),
    ],
)
def test_a_creation_with_bad_fields_is_refused_naming_the_field(
    changes: dict[str, typing.Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        decide(INITIAL, create(**changes))
    assert refused.value.details["field"] == field


def test_an_update_records_only_the_fields_that_change() -> None:
    command = UpdateEndpoint(
        url="https://hooks.example/helix", event_types=("*",), description="CI", at=at(5)
    )
    [event] = decide(CREATED, command)
    assert event == WebhookUpdated(endpoint_id=ENDPOINT, event_types=("*",), at=at(5))
    assert fold([event], CREATED).event_types == ("*",)


def test_an_update_that_changes_nothing_records_nothing() -> None:
    assert decide(CREATED, UpdateEndpoint(description="CI", at=at(5))) == []
    assert decide(CREATED, UpdateEndpoint(at=at(5))) == []


def test_an_update_with_empty_event_types_is_refused() -> None:
    with pytest.raises(ValidationError):
        decide(CREATED, UpdateEndpoint(event_types=(), at=at(5)))


@pytest.mark.parametrize("reason", list(DisabledReason))
def test_disabling_records_why_and_disabling_again_records_nothing(
    reason: DisabledReason,
) -> None:
    [event] = decide(CREATED, DisableEndpoint(reason=reason, detail="410 Gone", at=at(1)))
    assert event == WebhookDisabled(
        endpoint_id=ENDPOINT, reason=reason, detail="410 Gone", at=at(1)
    )
    disabled = fold([event], CREATED)
    assert not disabled.enabled and disabled.disabled_reason is reason
    assert decide(disabled, DisableEndpoint(at=at(2))) == []


def test_enabling_clears_the_reason_and_enabling_an_enabled_endpoint_records_nothing() -> None:
    disabled = run(DisableEndpoint(at=at(1)), state=CREATED)
    [event] = decide(disabled, EnableEndpoint(at=at(2)))
    assert event == WebhookEnabled(endpoint_id=ENDPOINT, at=at(2))
    enabled = fold([event], disabled)
    assert enabled.enabled and enabled.disabled_reason is None
    assert decide(enabled, EnableEndpoint(at=at(3))) == []


def test_a_rotation_records_until_when_the_previous_secret_still_signs() -> None:
    [event] = decide(CREATED, RotateSecret(previous_valid_until=at(3600), at=at(1)))
    assert event == WebhookSecretRotated(
        endpoint_id=ENDPOINT, previous_valid_until=at(3600), at=at(1)
    )
    assert fold([event], CREATED).previous_secret_until == at(3600)
    with pytest.raises(ValidationError):
        decide(CREATED, RotateSecret(previous_valid_until=at(0), at=at(1)))


def test_a_deleted_endpoint_refuses_every_command_as_not_found() -> None:
    [event] = decide(CREATED, DeleteEndpoint(at=at(1)))
    assert event == WebhookDeleted(endpoint_id=ENDPOINT, at=at(1))
    deleted = fold([event], CREATED)
    assert deleted.exists and not deleted.live and not deleted.enabled
    for command in (
        UpdateEndpoint(url="https://other.example/", at=at(2)),
        DisableEndpoint(at=at(2)),
        EnableEndpoint(at=at(2)),
        RotateSecret(previous_valid_until=at(9), at=at(2)),
        DeleteEndpoint(at=at(2)),
    ):
        with pytest.raises(NotFound):
            decide(deleted, command)
    with pytest.raises(InvalidTransition):
        decide(deleted, create())


def test_an_endpoint_that_does_not_exist_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide(INITIAL, EnableEndpoint(at=at()))


def test_a_created_event_recorded_before_it_carried_the_head_still_folds() -> None:
    old = WebhookCreated(
        endpoint_id=ENDPOINT, owner=OWNER, url="https://hooks.example/", event_types=("*",),
        description="", enabled=False, at=at(),
    )  # fmt: skip
    assert old.after_position is None
    state = fold([old])
    assert state.live and not state.enabled
