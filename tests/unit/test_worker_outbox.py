"""The worker's outbox: one request in flight, output coalesced meanwhile, memory bounded by
waiting (never by dropping), and a failed request's error handed to the job run once."""

from __future__ import annotations

import asyncio

import pytest

from helix.worker import reports
from helix.worker.outbox import Outbox
from helix.worker.protocol import Report
from helix.worker.usage import Usage


class Server:
    """Records requests; holds each one until `answer()` while `hold` is set."""

    def __init__(self) -> None:
        self.requests: list[list[Report]] = []
        self.hold = False
        self._go = asyncio.Event()
        self.fail_with: Exception | None = None

    async def post(self, batch: list[Report]) -> None:
        self.requests.append(batch)
        if self.hold:
            self._go.clear()
            await self._go.wait()
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error

    def answer(self) -> None:
        self._go.set()


async def test_output_put_while_a_request_is_in_flight_goes_out_merged_in_the_next() -> None:
    server = Server()
    server.hold = True
    outbox = Outbox(server.post)
    await outbox.put([reports.output("p", "stdout", ["1"])])
    await asyncio.sleep(0)  # the first request is in flight
    for n in range(2, 2502):
        await outbox.put([reports.output("p", "stdout", [str(n)])])
    await outbox.put([reports.progress(50)])
    server.hold = False
    server.answer()
    await outbox.flush()

    first, second = server.requests
    assert first == [reports.output("p", "stdout", ["1"])]
    assert [len(r.get("lines", ())) for r in second] == [1000, 1000, 500, 0]
    lines = [line for batch in server.requests for r in batch for line in r.get("lines", ())]
    assert lines == [str(n) for n in range(1, 2502)]
    assert second[-1] == reports.progress(50)


async def over_its_bound(server: Server) -> Outbox:
    """An outbox over its memory bound, with a request in flight that `server` holds."""
    server.hold = True
    outbox = Outbox(server.post, max_bytes=1000)
    await outbox.put([reports.output("p", "stdout", ["x" * 600])])
    await asyncio.sleep(0)
    await outbox.put([reports.output("p", "stdout", ["y" * 600])])
    return outbox


async def test_a_full_outbox_makes_the_producer_wait_until_the_server_answers() -> None:
    server = Server()
    outbox = await over_its_bound(server)
    third = asyncio.create_task(outbox.put([reports.output("p", "stdout", ["z"])]))
    await asyncio.sleep(0.01)
    assert not third.done()  # waits: nothing is dropped to make room
    server.hold = False
    server.answer()
    await third
    await outbox.flush()
    lines = [line for batch in server.requests for r in batch for line in r["lines"]]
    assert lines == ["x" * 600, "y" * 600, "z"]


async def test_a_failed_request_is_raised_once_and_the_outbox_sends_again_afterwards() -> None:
    server = Server()
    server.fail_with = RuntimeError("refused")
    outbox = Outbox(server.post)
    await outbox.put([reports.progress(1)])
    with pytest.raises(RuntimeError, match="refused"):
        await outbox.flush()
    await outbox.send([reports.job_failed("refused")])
    assert server.requests == [[reports.progress(1)], [reports.job_failed("refused")]]


SAMPLE = reports.phase_resources(
    "p", Usage(cpu_s=1.5, max_rss_bytes=2**20, read_bytes=10, write_bytes=20)
)


async def test_an_offer_is_queued_at_once_behind_what_was_put_even_when_the_outbox_is_full() -> (
    None
):
    server = Server()
    outbox = await over_its_bound(server)
    outbox.offer([SAMPLE])  # does not wait
    server.hold = False
    server.answer()
    await outbox.flush()
    sent = [r for batch in server.requests for r in batch]
    assert [r["type"] for r in sent] == ["output", "output", "phase_resources"]
    assert sent[-1] == {
        "type": "phase_resources", "phase": "p", "cpu_s": 1.5, "max_rss_bytes": 2**20,
        "read_bytes": 10, "write_bytes": 20,
    }  # fmt: skip


async def test_an_offer_after_a_failure_or_the_close_is_dropped_and_the_failure_still_raised() -> (
    None
):
    server = Server()
    server.fail_with = RuntimeError("refused")
    outbox = Outbox(server.post)
    await outbox.put([reports.progress(1)])
    await asyncio.sleep(0.01)
    outbox.offer([SAMPLE])
    with pytest.raises(RuntimeError, match="refused"):
        await outbox.flush()
    assert server.requests == [[reports.progress(1)]]
    outbox.close()
    outbox.offer([SAMPLE])
    await asyncio.sleep(0.01)
    assert server.requests == [[reports.progress(1)]]
