"""The envelope of a stored event, apart from its payload."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

ANY_VERSION = -1  # append without an expected version (the stream may or may not exist)


@attrs.frozen(kw_only=True)
class RecordedEvent:
    event_id: uuid.UUID
    stream_id: str
    stream_type: str
    version: int
    position: int | None
    project_id: uuid.UUID | None
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RecordedEvent:
        """An event as a query of the `events` table returns it (a row with its columns)."""
        return cls(
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            stream_type=row["stream_type"],
            version=row["version"],
            position=row["position"],
            project_id=row["project_id"],
            type=row["type"],
            schema_version=row["schema_version"],
            data=row["data"],
            metadata=row["metadata"],
            recorded_at=row["recorded_at"],
        )


@attrs.frozen(kw_only=True)
class EncodedEvent:
    """An event in its stored form, before it has an envelope."""

    type: str
    schema_version: int
    data: dict[str, Any]
    event_id: uuid.UUID = attrs.field(factory=uuid.uuid4)


@attrs.frozen(kw_only=True)
class Appended:
    """What an append wrote: the stream's new version and each event's id and version."""

    stream_id: str
    event_ids: tuple[uuid.UUID, ...]
    first_version: int
    last_version: int
    recorded_at: datetime


def stream_type_of(stream_id: str) -> str:
    """`project-<uuid>` belongs to the stream type `project`."""
    kind, sep, rest = stream_id.partition("-")
    if not sep or not kind or not rest:
        raise ValueError(f"stream id {stream_id!r} is not of the form <type>-<id>")
    return kind
