"""Who may read /metrics: the holder of HELIX_METRICS_TOKEN when it is set, else loopback peers
only (by the TCP peer address, never a forwarding header), unless HELIX_METRICS_PUBLIC is set.
Over real HTTP; a peer outside the loopback range is in tests/e2e/test_serve.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from helix.api.app import create_app
from helix.bootstrap import LogNode
from helix.config import Settings

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


async def _refused(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    assert resp.status == status
    assert body["error"]["code"] == code
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert "helix_http_requests_total" not in await resp.text()
    return body


async def test_with_a_token_set_metrics_need_it_even_from_loopback(
    make_client: MakeClient, user: Any
) -> None:
    client = await make_client(metrics_token="a-scraper-secret")

    bare = await client.get("/metrics")
    body = await _refused(bare, 401, "UNAUTHORIZED")
    assert "HELIX_METRICS_TOKEN" in body["error"]["message"]
    await _refused(
        await client.get("/metrics", headers={"Authorization": "Bearer a-scraper-secreT"}),
        401,
        "UNAUTHORIZED",
    )
    # A user's own credentials are not the metrics token.
    await _refused(await client.get("/metrics", headers=user.headers), 401, "UNAUTHORIZED")

    ok = await client.get("/metrics", headers={"Authorization": "Bearer a-scraper-secret"})
    assert ok.status == 200
    assert "helix_http_requests_total" in await ok.text()


async def test_without_a_token_a_loopback_peer_reads_the_metrics(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.get("/metrics")

    assert resp.status == 200
    assert "helix_eventstore_head_position" in await resp.text()


async def test_every_loopback_address_is_loopback_not_only_127_0_0_1(
    node: LogNode, settings: Settings
) -> None:
    server = TestServer(create_app(node, settings), host="127.0.0.2")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.get(f"http://127.0.0.2:{server.port}/metrics")
            assert resp.status == 200
            assert "helix_http_requests_total" in await resp.text()
    finally:
        await server.close()


async def test_a_request_forwarded_by_a_proxy_on_this_host_is_refused(
    client: TestClient[Any, Any],
) -> None:
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}):
        body = await _refused(await client.get("/metrics", headers=header), 403, "FORBIDDEN")
        assert body["error"]["details"]["rule"] == "loopback"


async def test_public_metrics_are_served_to_anyone(make_client: MakeClient) -> None:
    client = await make_client(metrics_public=True)

    resp = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})

    assert resp.status == 200


def test_the_metrics_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"HELIX_METRICS_TOKEN": "t", "HELIX_METRICS_PUBLIC": "yes"})
    assert (settings.metrics_token, settings.metrics_public) == ("t", True)
    default = Settings.from_env({})
    assert (default.metrics_token, default.metrics_public) == (None, False)
    with pytest.raises(ValueError, match="HELIX_METRICS_PUBLIC"):
        Settings.from_env({"HELIX_METRICS_PUBLIC": "maybe"})
