"""What travels to subscribers: a sequenced event with its project's owner, rendered once."""

from __future__ import annotations

import json

import attrs

from helix import envelope
from helix.eventstore import RecordedEvent

# One encoder for every frame: `json.dumps` with options builds a new one per call, which a
# replay of tens of thousands of events a second notices.
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode


class Frame:
    """One event as the tailer fans it out. Shared by every subscriber that receives it, so the
    JSON is rendered at most once however many clients there are."""

    __slots__ = ("_chunk", "_json", "_sse", "event", "owner", "position")

    def __init__(self, event: RecordedEvent, owner: str | None) -> None:
        assert event.position is not None, "only sequenced events are streamed"
        self.event = event
        self.owner = owner
        self.position: int = event.position
        self._json: str | None = None
        self._sse: bytes | None = None
        self._chunk: bytes | None = None

    @property
    def json(self) -> str:
        if self._json is None:
            self._json = _ENCODE(envelope.public(self.event))
        return self._json

    @property
    def sse(self) -> bytes:
        """The event as one server-sent-events message."""
        if self._sse is None:
            text = f"id: {self.position}\nevent: {self.event.type}\ndata: {self.json}\n\n"
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
        return f"Frame({self.position}, {self.event.type!r}, {self.event.stream_id!r})"


@attrs.frozen
class CaughtUp:
    """The marker between replayed and live events: everything up to `position` was sent."""

    position: int


Item = Frame | CaughtUp
