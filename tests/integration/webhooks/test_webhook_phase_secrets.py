"""A webhook delivery of a project whose phase has a secret carries the sealed form, marked
redacted, and never the secret."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver

from helix.webhooks import WebhookRoles

SECRET = "webhook-s3cr3t-31c4"


async def test_a_delivered_event_shows_the_sealed_secret_and_never_its_value(
    client: TestClient[Any, Any], user: Caller, receiver: Receiver, webhooks: WebhookRoles
) -> None:
    body = {"url": receiver.url, "event_types": ["project.phases_planned"]}
    resp = await client.post("/api/v1/webhooks", json=body, headers=user.headers)
    assert resp.status == 201, await resp.text()
    receiver.secrets = [(await resp.json())["secret"]]
    phases = [{"name": "b", "command": ["true"], "env": {"TOKEN": {"secret": SECRET}}}]
    resp = await client.post(
        "/api/v1/projects", json={"name": "p", "phases": phases}, headers=user.headers
    )
    assert resp.status == 201, await resp.text()
    shown = (await resp.json())["phases"][0]["env"]["TOKEN"]

    await receiver.wait_for(lambda got: len(got) >= 1)
    [delivered] = receiver.received
    assert delivered.verified
    assert delivered.body["data"]["phases"][0]["env"]["TOKEN"] == shown
    assert shown["redacted"] is True and SECRET not in shown["sealed"]
    assert SECRET not in json.dumps(delivered.body)
