"""The `webhook_endpoints` read model: one row per endpoint, folded from the webhook streams.

Applied inline (the API reads an endpoint back at once, and the dispatcher and the delivery
workers join it) and rebuildable from the log. The signing secrets (`webhook_secrets`) and the
delivery health (`webhook_health`) are not events, so they are not in this read model: the
endpoint service and the delivery workers write them, and a rebuild never touches them.

An endpoint receives the events sequenced after `after_position`. Its created event carries
the log's head read in the creating transaction; a created event recorded before events
carried it gives instead its own log position (as the runner and a rebuild meet it), and one
met before it is sequenced the head at the time it is applied.
"""

from __future__ import annotations

from typing import Any, ClassVar

from helix import globs
from helix.domain.webhook import (
    EVENTS,
    WebhookCreated,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookSecretRotated,
    WebhookUpdated,
)
from helix.eventstore import RecordedEvent
from helix.sql import load
from projections.base import Tables
from projections.seen import StreamProjection, Write, sql

SQL = load("projections", "webhooks.sql")
TABLES: tuple[str, ...] = ("webhook_endpoints",)


class WebhooksProjection(StreamProjection):
    name = "webhooks"
    version = 1
    event_types: ClassVar[frozenset[str]] = frozenset(EVENTS)
    tables = TABLES
    blocks = SQL
    primary = "webhook_endpoints"

    def writes(self, event: RecordedEvent, decoded: Any, t: Tables) -> list[Write]:
        v = event.version
        match decoded:
            case WebhookCreated():
                types = list(decoded.event_types)
                after = decoded.after_position
                return [(sql(SQL, "created", t), (
                    decoded.endpoint_id, decoded.owner, decoded.url, types,
                    globs.like_patterns(types), decoded.description, decoded.enabled,
                    event.position if after is None else after, decoded.at, v,
                ))]  # fmt: skip
            case WebhookUpdated():
                wanted = None if decoded.event_types is None else list(decoded.event_types)
                return [(sql(SQL, "updated", t), (
                    decoded.endpoint_id, decoded.url, wanted, globs.like_patterns(wanted),
                    decoded.description, decoded.at, v,
                ))]  # fmt: skip
            case WebhookDisabled():
                return [(sql(SQL, "disabled", t), (
                    decoded.endpoint_id, decoded.reason.value, decoded.at, v,
                ))]  # fmt: skip
            case WebhookEnabled():
                return [(sql(SQL, "enabled", t), (decoded.endpoint_id, decoded.at, v))]
            case WebhookSecretRotated():
                return [(sql(SQL, "secret_rotated", t), (
                    decoded.endpoint_id, decoded.previous_valid_until, decoded.at, v,
                ))]  # fmt: skip
            case WebhookDeleted():
                return [(sql(SQL, "deleted", t), (decoded.endpoint_id, decoded.at, v))]
        return []


PROJECTION = WebhooksProjection()
