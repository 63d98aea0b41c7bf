"""`helix webhooks replay` against the database, like the other commands."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from webhook_support import Caller, delivery_rows, wait_until

from helix.bootstrap import LogNode
from helix.cli import build_parser

MakeProjects = Callable[..., Awaitable[list[uuid.UUID]]]


async def test_the_replay_command_queues_the_range_as_replay_deliveries(
    client: TestClient[Any, Any],
    node: LogNode,
    database_url: str,
    user: Caller,
    make_projects: MakeProjects,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert node.pool is not None
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/x", "event_types": ["project.created"]},
        headers=user.headers,
    )
    endpoint = await resp.json()
    await make_projects(user, 4)

    async def created_positions() -> list[int | None]:
        found = await node.store.read_all(0, 1000, types=["project.created"])
        return [e.position for e in found]

    await wait_until(lambda: _count_is(created_positions(), 4))
    created = await created_positions()
    since = created[1]
    monkeypatch.setenv("HELIX_DATABASE_URL", database_url)
    args = build_parser().parse_args(
        ["webhooks", "replay", endpoint["id"], "--since-position", str(since)]
    )
    assert await args.handler(args) == 0
    assert "queued 3 deliveries" in capsys.readouterr().out
    replayed = [r for r in await delivery_rows(node.pool, endpoint["id"]) if r["kind"] == "replay"]
    assert [r["position"] for r in replayed] == created[1:]


async def _count_is(found: Awaitable[list[int | None]], count: int) -> bool:
    return len(await found) == count


@pytest.mark.parametrize(
    ("since_time", "says"),
    [
        ("2026-01-31T12:00:00", "with an offset"),
        ("9999-12-31T23:59:59-14:00", "outside the times"),
        ("yesterday", "RFC 3339"),
    ],
)
async def test_the_replay_command_refuses_a_time_the_api_would_refuse(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    since_time: str,
    says: str,
) -> None:
    # Refused before any database is reached: this one does not exist.
    monkeypatch.setenv("HELIX_DATABASE_URL", "postgresql://helix@127.0.0.1:9/none")
    endpoint = str(uuid.uuid4())
    args = build_parser().parse_args(["webhooks", "replay", endpoint, "--since-time", since_time])

    assert await args.handler(args) == 2
    assert says in capsys.readouterr().err
