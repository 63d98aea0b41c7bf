"""The webhook endpoint aggregate as a decider: `decide(state, command) -> events`,
`evolve(state, event)`.

An endpoint is created once, changed, disabled and enabled any number of times, and deleted
for good: every command on an endpoint that does not exist or was deleted is refused as not
found (an API caller cannot tell the two apart). Disabling a disabled endpoint, enabling an
enabled one and an update that changes nothing return no events, so the delivery workers may
ask to disable an endpoint more than once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import assert_never
from uuid import UUID

import attrs

from helix import globs
from helix.domain.webhook.commands import (
    Command,
    CreateEndpoint,
    DeleteEndpoint,
    DisableEndpoint,
    EnableEndpoint,
    RotateSecret,
    UpdateEndpoint,
)
from helix.domain.webhook.events import (
    DisabledReason,
    Event,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)
from helix.errors import InvalidTransition, NotFound, ValidationError

# An endpoint's limits; the API's request schemas publish them.
MAX_URL_CHARS = 2_048
MAX_DESCRIPTION_CHARS = 2_000
MAX_SECRET_CHARS = 200
MAX_DETAIL_CHARS = 2_000


@attrs.frozen(kw_only=True)
class EndpointState:
    """An endpoint folded from its events; `id is None` means it does not exist yet."""

    id: UUID | None = None
    owner: UUID | None = None
    url: str = ""
    event_types: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = False
    disabled_reason: DisabledReason | None = None
    # Until then deliveries are signed with the previous secret as well.
    previous_secret_until: datetime | None = None
    deleted: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.id is not None

    @property
    def live(self) -> bool:
        """It exists and was not deleted."""
        return self.exists and not self.deleted


INITIAL = EndpointState()


def fold(events: Iterable[Event], state: EndpointState = INITIAL) -> EndpointState:
    for event in events:
        state = evolve(state, event)
    return state


def check_event_types(event_types: Sequence[str]) -> tuple[str, ...]:
    if not event_types:
        raise ValidationError("event_types needs at least one type or glob", field="event_types")
    return globs.check(event_types, "event_types")


def _check_url(url: str) -> str:
    if not 0 < len(url) <= MAX_URL_CHARS:
        raise ValidationError(f"url has 1 to {MAX_URL_CHARS} characters", field="url")
    return url


def _check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ValidationError(
            f"description has at most {MAX_DESCRIPTION_CHARS} characters", field="description"
        )
    return description


def decide(state: EndpointState, command: Command) -> list[Event]:
    if isinstance(command, CreateEndpoint):
        return _create(state, command)
    if not state.live:
        raise NotFound("webhook endpoint not found")
    assert state.id is not None
    endpoint_id, at = state.id, command.at
    match command:
        case UpdateEndpoint():
            return _update(state, command)
        case DisableEndpoint():
            if not state.enabled:
                return []
            detail = command.detail[:MAX_DETAIL_CHARS]
            return [
                WebhookDisabled(
                    endpoint_id=endpoint_id, reason=command.reason, detail=detail, at=at
                )
            ]
        case EnableEndpoint():
            return [] if state.enabled else [WebhookEnabled(endpoint_id=endpoint_id, at=at)]
        case RotateSecret():
            if command.previous_valid_until < at:
                raise ValidationError("the previous secret cannot expire before the rotation")
            return [
                WebhookSecretRotated(
                    endpoint_id=endpoint_id,
                    previous_valid_until=command.previous_valid_until,
                    at=at,
                )
            ]
        case DeleteEndpoint():
            return [WebhookDeleted(endpoint_id=endpoint_id, at=at)]
        case _:
            assert_never(command)


def _create(state: EndpointState, command: CreateEndpoint) -> list[Event]:
    if state.exists:
        raise InvalidTransition(
            "the webhook endpoint already exists",
            current={"endpoint_id": str(state.id), "deleted": state.deleted},
        )
    if command.after_position < 0:
        raise ValidationError("after_position is a log position (0 or more)")
    return [
        WebhookCreated(
            endpoint_id=command.endpoint_id,
            owner=command.owner,
            url=_check_url(command.url),
            event_types=check_event_types(command.event_types),
            description=_check_description(command.description),
            enabled=command.enabled,
            after_position=command.after_position,
            at=command.at,
        )
    ]


def _update(state: EndpointState, command: UpdateEndpoint) -> list[Event]:
    """Only the fields that change are in the event; no event if none does."""
    assert state.id is not None
    url = _check_url(command.url) if command.url is not None else None
    wanted = check_event_types(command.event_types) if command.event_types is not None else None
    description = (
        _check_description(command.description) if command.description is not None else None
    )
    changed = WebhookUpdated(
        endpoint_id=state.id,
        url=url if url != state.url else None,
        event_types=wanted if wanted != state.event_types else None,
        description=description if description != state.description else None,
        at=command.at,
    )
    if changed.url is None and changed.event_types is None and changed.description is None:
        return []
    return [changed]


def evolve(state: EndpointState, event: Event) -> EndpointState:
    match event:
        case WebhookCreated():
            return EndpointState(
                id=event.endpoint_id,
                owner=event.owner,
                url=event.url,
                event_types=tuple(event.event_types),
                description=event.description,
                enabled=event.enabled,
                created_at=event.at,
                updated_at=event.at,
            )
        case WebhookUpdated():
            return attrs.evolve(
                state,
                url=state.url if event.url is None else event.url,
                event_types=(
                    state.event_types if event.event_types is None else tuple(event.event_types)
                ),
                description=state.description if event.description is None else event.description,
                updated_at=event.at,
            )
        case WebhookDisabled():
            return attrs.evolve(
                state, enabled=False, disabled_reason=event.reason, updated_at=event.at
            )
        case WebhookEnabled():
            return attrs.evolve(state, enabled=True, disabled_reason=None, updated_at=event.at)
        case WebhookSecretRotated():
            return attrs.evolve(
                state, previous_secret_until=event.previous_valid_until, updated_at=event.at
            )
        case WebhookDeleted():
            return attrs.evolve(state, enabled=False, deleted=True, updated_at=event.at)
        case _:
            assert_never(event)
