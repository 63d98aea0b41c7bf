"""One event, every reader: the webhook body, SSE, WebSocket, `/events` and the export all
carry the same envelope fields, with the same timestamp form where the form is public."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver

from helix.audit.export import export_events
from helix.bootstrap import LogNode
from helix.webhooks import WebhookRoles
from tests.support import first_sse_event, first_websocket_event

MakeProjects = Callable[..., Awaitable[list[uuid.UUID]]]
PUBLIC = (
    "position", "event_id", "stream_id", "stream_type", "version", "project_id", "type",
    "schema_version", "data", "metadata", "recorded_at",
)  # fmt: skip
# RFC 3339 in UTC with `Z` and six fraction digits: the one public form of an instant.
PUBLIC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


async def _exported(node: LogNode, position: int) -> dict[str, Any]:
    out = io.StringIO()
    await export_events(node.store.pool, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return next(line for line in lines if line["position"] == position)


async def test_every_reader_of_an_event_sees_the_same_envelope_and_time_form(
    client: TestClient[Any, Any],
    node: LogNode,
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    body = {"url": receiver.url, "event_types": ["project.created"]}
    resp = await client.post("/api/v1/webhooks", json=body, headers=user.headers)
    assert resp.status == 201, await resp.text()
    receiver.secrets = [(await resp.json())["secret"]]
    await make_projects(user, 1)
    await receiver.wait_for(lambda got: len(got) >= 1)
    delivered = receiver.received[0].body
    position = delivered["position"]

    resp = await client.get(f"/api/v1/events/{position}", headers=user.headers)
    assert resp.status == 200, await resp.text()
    audit = await resp.json()
    sse = await first_sse_event(client, user.headers, position - 1)
    ws = await first_websocket_event(client, user.headers, position - 1)
    exported = await _exported(node, position)

    expected = {name: audit[name] for name in PUBLIC}
    assert expected["type"] == "project.created"
    assert PUBLIC_TIME.fullmatch(expected["recorded_at"]), expected["recorded_at"]
    for seen in (sse, ws, delivered):
        assert {name: seen[name] for name in PUBLIC} == expected
    assert (delivered["id"], delivered["timestamp"]) == (audit["event_id"], audit["recorded_at"])
    # The export keeps the hash chain's form of the instant; it is the same instant.
    assert {name: exported[name] for name in PUBLIC if name != "recorded_at"} == {
        name: value for name, value in expected.items() if name != "recorded_at"
    }
    assert datetime.fromisoformat(exported["recorded_at"]) == datetime.fromisoformat(
        expected["recorded_at"]
    )
