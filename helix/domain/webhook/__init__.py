"""The webhook endpoint aggregate: where a user's events are delivered, and how."""

from __future__ import annotations

from uuid import UUID

from helix.domain.webhook.commands import (
    Command,
    CreateEndpoint,
    DeleteEndpoint,
    DisableEndpoint,
    EnableEndpoint,
    RotateSecret,
    UpdateEndpoint,
)
from helix.domain.webhook.decider import (
    INITIAL,
    MAX_DESCRIPTION_CHARS,
    MAX_DETAIL_CHARS,
    MAX_SECRET_CHARS,
    MAX_URL_CHARS,
    EndpointState,
    check_event_types,
    decide,
    evolve,
    fold,
)
from helix.domain.webhook.events import (
    EVENTS,
    DisabledReason,
    Event,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)

STREAM_TYPE = "webhook"


def stream_id(endpoint_id: UUID) -> str:
    return f"{STREAM_TYPE}-{endpoint_id}"


__all__ = [
    "EVENTS",
    "INITIAL",
    "MAX_DESCRIPTION_CHARS",
    "MAX_DETAIL_CHARS",
    "MAX_SECRET_CHARS",
    "MAX_URL_CHARS",
    "STREAM_TYPE",
    "Command",
    "CreateEndpoint",
    "DeleteEndpoint",
    "DisableEndpoint",
    "DisabledReason",
    "EnableEndpoint",
    "EndpointState",
    "Event",
    "RotateSecret",
    "UpdateEndpoint",
    "WebhookCreated",
    "WebhookDeleted",
    "WebhookDisabled",
    "WebhookEnabled",
    "WebhookSecretRotated",
    "WebhookUpdated",
    "check_event_types",
    "decide",
    "evolve",
    "fold",
    "stream_id",
]
