"""Which events an audit read, an export or an API page selects, and how filters are parsed
(times by `helix.inputs.parse_time`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import attrs

from helix import globs
from helix.errors import ValidationError


@attrs.frozen(kw_only=True)
class EventFilter:
    """Every field narrows the selection; None (or empty) means no narrowing.

    `since` is inclusive and `until` exclusive, both on `recorded_at`. `viewer`, when set, is a
    user id: only events of projects that user owns, or of their own `user-<id>` stream.
    """

    after: int = 0
    up_to: int | None = None
    stream_id: str | None = None
    project_id: uuid.UUID | None = None
    types: tuple[str, ...] = ()
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    viewer: str | None = None

    def residual_args(self) -> tuple[object, ...]:
        """The parameters $4 to $8 of the `audit_events` queries: the filters no index serves."""
        return (globs.like_patterns(self.types), self.actor, self.since, self.until, self.viewer)


def parse_types(values: Iterable[str]) -> tuple[str, ...]:
    """Type globs from repeated and/or comma-separated values (`job.*,project.created`)."""
    return globs.split(values, "type")


def parse_uuid(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValidationError(f"'{field}' must be a UUID", field=field) from None


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until < since:
        raise ValidationError("'until' must not be before 'since'", field="until")
