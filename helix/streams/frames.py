"""What travels to subscribers: a sequenced event with its project's owner, rendered once.

A frame is made from a row of `EventStore.read_public`: the columns the filters read, and the
event's public JSON as PostgreSQL rendered it. That text is what every transport sends (the SSE
`data:` line, the WebSocket `payload`), with no decoding or encoding on the way; the few readers
that need the event itself (revocations, owners learnt from `project.created`) decode it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from helix.eventstore import RecordedEvent


class Frame:
    """One event as the tailer fans it out. Shared by every subscriber that receives it, so its
    bytes are made at most once however many clients there are."""

    __slots__ = (
        "_chunk",
        "_event",
        "_sse",
        "json",
        "owner",
        "position",
        "project_id",
        "stream_id",
        "type",
    )

    def __init__(self, row: Mapping[str, Any], owner: str | None) -> None:
        self.position: int = row["position"]
        self.stream_id: str = row["stream_id"]
        self.project_id: uuid.UUID | None = row["project_id"]
        self.type: str = row["type"]
        self.json: str = row["json"]  # the public envelope (`helix.envelope.public`) as text
        self.owner = owner
        self._event: RecordedEvent | None = None
        self._sse: bytes | None = None
        self._chunk: bytes | None = None

    @property
    def event(self) -> RecordedEvent:
        """The event, decoded from its JSON on first use."""
        if self._event is None:
            doc = json.loads(self.json)
            project_id = doc["project_id"]
            self._event = RecordedEvent(
                event_id=uuid.UUID(doc["event_id"]),
                stream_id=doc["stream_id"],
                stream_type=doc["stream_type"],
                version=doc["version"],
                position=doc["position"],
                project_id=None if project_id is None else uuid.UUID(project_id),
                type=doc["type"],
                schema_version=doc["schema_version"],
                data=doc["data"],
                metadata=doc["metadata"],
                recorded_at=datetime.fromisoformat(doc["recorded_at"]),
            )
        return self._event

    @property
    def sse(self) -> bytes:
        """The event as one server-sent-events message."""
        if self._sse is None:
            text = f"id: {self.position}\nevent: {self.type}\ndata: {self.json}\n\n"
            self._sse = text.encode()
        return self._sse

    @property
    def sse_chunk(self) -> bytes:
        """The SSE message as one HTTP/1.1 chunk (`Transfer-Encoding: chunked` framing)."""
        if self._chunk is None:
            message = self.sse
            self._chunk = b"%x\r\n%b\r\n" % (len(message), message)
        return self._chunk

    def __repr__(self) -> str:
        return f"Frame({self.position}, {self.type!r}, {self.stream_id!r})"


@attrs.frozen
class CaughtUp:
    """The marker between replayed and live events: everything up to `position` was sent."""

    position: int


Item = Frame | CaughtUp
