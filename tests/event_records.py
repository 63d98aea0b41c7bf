"""A recorded event made up for the tests that need one without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from helix.eventstore import RecordedEvent


def recorded_event(
    type: str = "job.queued",
    stream_id: str = "job-1",
    project_id: uuid.UUID | None = None,
    position: int = 1,
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        stream_id=stream_id,
        stream_type=stream_id.split("-")[0],
        version=1,
        position=position,
        project_id=project_id,
        type=type,
        schema_version=1,
        data={},
        metadata={},
        recorded_at=datetime.now(UTC),
    )
