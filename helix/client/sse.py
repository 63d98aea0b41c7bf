"""Server-sent events as a client reads them: an incremental parser of the WHATWG rules
Helix's server needs (id, event, data, retry, comments, blank-line dispatch), fed whole lines
split from the raw bytes (an event may be longer than any line limit of a stream reader)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import attrs

from helix.client.errors import HelixClientError

# Far above any event Helix sends (a request body is 1 MiB by default), so only a stream that
# is not Helix's, or is broken, reaches it.
MAX_LINE_BYTES = 64 * 1024 * 1024


class LineTooLong(HelixClientError):
    """The stream sent a line longer than the client takes: it is not a Helix event stream."""


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


async def lines(
    chunks: AsyncIterable[bytes], max_line_bytes: int = MAX_LINE_BYTES
) -> AsyncIterator[str]:
    """The lines of a byte stream (LF or CRLF), each decoded as UTF-8 once it is whole; a last
    line the stream cut off is not a line. A line over `max_line_bytes` is `LineTooLong`: the
    part of a line not yet ended is kept as a list of pieces, joined once, and bounded."""
    pending: list[bytes] = []
    size = 0
    async for chunk in chunks:
        *whole, rest = chunk.split(b"\n")
        for raw in whole:
            if pending:
                raw, pending, size = b"".join([*pending, raw]), [], 0
            if len(raw) > max_line_bytes:
                raise LineTooLong(f"a stream line over {max_line_bytes} bytes")
            yield raw.removesuffix(b"\r").decode("utf-8", "replace")
        if rest:
            size += len(rest)
            if size > max_line_bytes:
                raise LineTooLong(f"a stream line over {max_line_bytes} bytes")
            pending.append(rest)
