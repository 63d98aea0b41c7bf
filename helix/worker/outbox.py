"""A job's reports on their way to the server: one request in flight, the rest coalesced.

The phase's output pumps hand lines over and go back to reading at once; while a request is in
flight, what arrives meanwhile waits here, adjacent output of one phase and stream merged into
reports of up to `MAX_LINES_PER_REPORT` lines, and goes out as the next request (or the next
few, each within the server's limits). So reporting never holds up a phase that prints faster
than the server answers, and the number of requests falls as the rate of output rises.

Memory is bounded: when more than `max_bytes` of output waits (the server is slower than the
phase for long), `put` waits for the request in flight to be answered before it takes more.
The pump then stops reading, the pipe fills and the phase blocks on its next write: the phase
is slowed, never its output dropped. Reports leave in the order they were put, one request at
a time, so the server sees them in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from helix.worker import reports
from helix.worker.protocol import Report

MAX_BUFFERED_BYTES = 32 * 1024 * 1024


def _weight(report: Report) -> int:
    """About how many bytes a report holds: its output lines' characters and one for each end
    (so merging or splitting output keeps the sum), a fixed amount for any other report."""
    if report.get("type") != "output":
        return 256
    return sum(len(line) + 1 for line in report["lines"])


def coalesced(pending: list[Report], report: Report) -> None:
    """Append `report` to `pending`, merged into the last one when both are output of the same
    phase and stream, each output report at most `MAX_LINES_PER_REPORT` lines."""
    if report.get("type") != "output":
        pending.append(report)
        return
    lines = list(report["lines"])
    last = pending[-1] if pending else None
    if (
        last is not None
        and last.get("type") == "output"
        and (last["phase"], last["stream"]) == (report["phase"], report["stream"])
    ):
        room = reports.MAX_LINES_PER_REPORT - len(last["lines"])
        last["lines"].extend(lines[:room])
        lines = lines[room:]
    for start in range(0, len(lines), reports.MAX_LINES_PER_REPORT):
        chunk = lines[start : start + reports.MAX_LINES_PER_REPORT]
        pending.append({**report, "lines": chunk})


class Outbox:
    """Sends what is `put` through `post`, one request at a time, in order. An error `post`
    raises ends the sending: what waits is dropped, and the next `put` or `flush` raises the
    error, once (the job run decides what it means, and may then send again)."""

    def __init__(
        self,
        post: Callable[[list[Report]], Awaitable[None]],
        *,
        max_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self._post = post
        self._max_bytes = max_bytes
        self._pending: list[Report] = []
        self._bytes = 0  # held: waiting and in flight
        self._sender: asyncio.Task[None] | None = None
        self._sent = asyncio.Event()  # set after each request is answered (or sending ends)
        self._error: BaseException | None = None
        self._closed = False

    async def put(self, batch: Sequence[Report]) -> None:
        """Queue `batch` to be sent; waits only while the outbox is over its memory bound."""
        self._raise_error()
        while self._bytes > self._max_bytes and self._sender is not None:
            self._sent.clear()
            await self._sent.wait()
            self._raise_error()
        self._queue(batch)

    def offer(self, batch: Sequence[Report]) -> None:
        """Queue `batch` at once, beyond the memory bound: for a few small reports that must
        not wait behind output (resource samples). Dropped once the sending has failed or the
        outbox is closed; the job run hears of a failure at its next `put` or `flush`."""
        if self._error is None and not self._closed:
            self._queue(batch)

    def _queue(self, batch: Sequence[Report]) -> None:
        for report in batch:
            coalesced(self._pending, report)
            self._bytes += _weight(report)
        if self._pending and self._sender is None:
            self._sender = asyncio.create_task(self._send())

    async def flush(self) -> None:
        """Until everything put so far is answered; the sending's error, if it failed."""
        sender = self._sender
        if sender is not None:
            await asyncio.shield(sender)  # a cancelled flush leaves the sending going
        self._raise_error()

    async def send(self, batch: Sequence[Report]) -> None:
        """`put` and `flush`: `batch` and everything before it, answered."""
        await self.put(batch)
        await self.flush()

    def close(self) -> None:
        """Stop sending (the job run is over): what waits is dropped."""
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
        self._pending.clear()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _send(self) -> None:
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                for request in reports.batches(taken):
                    await self._post(request)
                    self._bytes -= sum(_weight(r) for r in request)
                    self._sent.set()
        except Exception as exc:  # for the job run: put or flush raises it
            self._error = exc
            self._pending.clear()
        finally:
            self._bytes = max(0, self._bytes) if self._error is None else 0
            self._sender = None
            self._sent.set()
