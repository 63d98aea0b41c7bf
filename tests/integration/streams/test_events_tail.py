"""`helix events tail` against a real server: JSON lines, filters, and resuming after the
server drops the connection."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from aiohttp.test_utils import TestClient
from streams_support import settled

from helix.api.streams import TAILER
from helix.bootstrap import LogNode
from helix.cli.events import tail
from helix.eventstore import ANY_VERSION, EncodedEvent

Client = TestClient[Any, Any]


def tick(n: int, kind: str = "a") -> EncodedEvent:
    return EncodedEvent(type=f"test.{kind}", schema_version=1, data={"n": n})


async def lines_in(out: io.StringIO, count: int) -> None:
    for _ in range(2000):
        if out.getvalue().count("\n") >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tail printed fewer than {count} lines")


async def test_tail_prints_one_json_line_per_event_and_resumes_after_a_dropped_connection(
    client: Client, node: LogNode, admin: Any
) -> None:
    start = await settled(node.store.pool)
    out = io.StringIO()
    server = str(client.make_url("")).rstrip("/")
    task = asyncio.create_task(
        tail(server, admin.key, types="test.a", after=start, count=8, out=out)
    )
    await node.store.append("test-tail", ANY_VERSION, [tick(n) for n in range(4)])
    await node.store.append("test-tail", ANY_VERSION, [tick(99, "b")])
    await lines_in(out, 4)

    client.app[TAILER].close_all()  # the server ends every stream, as a restarting node does
    await node.store.append("test-tail", ANY_VERSION, [tick(n) for n in range(4, 8)])
    assert await asyncio.wait_for(task, 30) == 0

    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["data"]["n"] for e in printed] == list(range(8))
    assert [e["position"] for e in printed] == sorted({e["position"] for e in printed})
    assert all(e["type"] == "test.a" for e in printed)


async def test_tail_reports_a_refused_stream_and_exits_non_zero(client: Client) -> None:
    server = str(client.make_url("")).rstrip("/")

    assert await tail(server, "hx_wrong", out=io.StringIO()) == 1
