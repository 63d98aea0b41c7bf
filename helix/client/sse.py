"""Server-sent events as a client reads them: an incremental parser of the WHATWG rules
Helix's server needs (id, event, data, retry, comments, blank-line dispatch), fed whole lines
split from the raw bytes (an event may be longer than any line limit of a stream reader)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import attrs


@attrs.frozen
class Message:
    event: str
    data: str
    id: str | None = None


class Parser:
    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed_line(self, line: str) -> Message | None:
        if line == "":
            if not self._data and not self._event:
                return None
            message = Message(self._event or "message", "\n".join(self._data), self._id)
            if self._id is not None:
                self.last_id = self._id
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


async def lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The lines of a byte stream (LF or CRLF), each decoded as UTF-8 once it is whole; a last
    line the stream cut off is not a line."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        *whole, buffer = buffer.split(b"\n")
        for raw in whole:
            yield raw.removesuffix(b"\r").decode("utf-8", "replace")
