"""The SSRF guard: at registration (POST and PATCH, literal hosts and what names resolve to) and
at connect time (the address actually connected to), one rule, and its reason on record."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import attrs
import pytest
from aiohttp.test_utils import TestClient
from webhook_support import Caller, Receiver, StaticResolver, wait_until

from helix.bootstrap import LogNode
from helix.config import Settings
from helix.errors import ValidationError
from helix.webhooks import WebhookRoles
from helix.webhooks.endpoints import Endpoints
from helix.webhooks.sender import Outcome, Sender
from helix.webhooks.ssrf import SETTING, AddressGuard, BlockedAddress

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]
MakeProjects = Callable[..., Awaitable[list[uuid.UUID]]]
PUBLIC = "http://93.184.216.34/hook"

# Hosts that reach this machine (or its metadata service) however they are spelled, with the
# address the refusal must name.
LOOPBACK_FORMS = [
    ("127.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("localhost6", "::1"),
    ("foo.localhost", "127.0.0.1"),
    ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ("[::127.0.0.1]", "::7f00:1"),
]
# 6to4, Teredo (client bits inverted) and NAT64 carriers of 127.0.0.1, 10.0.0.1 and the
# metadata address; then the same carriers of a public address.
FORBIDDEN_CARRIERS = [
    ("[2002:7f00:1::1]", "127.0.0.1"),
    ("[2002:a9fe:a9fe::]", "169.254.169.254"),
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "127.0.0.1"),
    ("[2001:0:4136:e378:8000:63bf:f5ff:fffe]", "10.0.0.1"),
    ("[64:ff9b::127.0.0.1]", "127.0.0.1"),
    ("[64:ff9b::169.254.169.254]", "169.254.169.254"),
]
PUBLIC_CARRIERS = [
    "[2002:5db8:d822::1]",
    "[2001:0:4136:e378:8000:63bf:a247:27dd]",
    "[64:ff9b::93.184.216.34]",
    "[::ffff:93.184.216.34]",
]


async def _state(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """What a refused request must leave as it was: the log and the endpoint rows."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM events) AS events,"
        " (SELECT array_agg((endpoint_id, url, version) ORDER BY endpoint_id)::text"
        "  FROM webhook_endpoints) AS endpoints"
    )
    return tuple(row)


def _assert_refused(status: int, body: dict[str, Any], address: str) -> None:
    assert status == 422, body
    error = body["error"]
    assert error["code"] == "VALIDATION_ERROR" and body["request_id"]
    assert SETTING in error["message"] and address in error["message"]
    assert error["details"]["field"] == "url"
    assert error["details"]["setting"] == SETTING
    assert ipaddress.ip_address(error["details"]["address"]) == ipaddress.ip_address(address)


async def _send(sender: Sender, url: str) -> Outcome:
    """One attempt with a started sender."""
    await sender.start()
    try:
        return await sender.post(url, b"{}", {"webhook-id": "x"})
    finally:
        await sender.stop()


@pytest.fixture
async def strict(make_client: MakeClient) -> TestClient[Any, Any]:
    """A node whose SSRF guard allows no network."""
    return await make_client(webhook_allowed_networks=())


@pytest.fixture
def loopback_hostname() -> str:
    """This machine's host name, where it resolves to loopback addresses only (commonly so
    through /etc/hosts); the test is skipped where it does not."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"the host name {name} does not resolve here")
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    if not all(a.is_loopback for a in addresses) or name.lower().endswith("localhost"):
        pytest.skip(f"the host name {name} resolves to {addresses}, not only to loopback")
    return name


# --- at registration ------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "address"), LOOPBACK_FORMS + FORBIDDEN_CARRIERS)
async def test_every_spelling_of_a_forbidden_host_is_refused_at_creation_and_changes_nothing(
    strict: TestClient[Any, Any], node: LogNode, user: Caller, host: str, address: str
) -> None:
    assert node.pool is not None
    before = await _state(node.pool)
    resp = await strict.post(
        "/api/v1/webhooks", json={"url": f"http://{host}:8080/hook"}, headers=user.headers
    )
    _assert_refused(resp.status, await resp.json(), address)
    assert await _state(node.pool) == before


@pytest.mark.parametrize(("host", "address"), LOOPBACK_FORMS + FORBIDDEN_CARRIERS)
async def test_every_spelling_of_a_forbidden_host_is_refused_at_patch_and_changes_nothing(
    strict: TestClient[Any, Any], node: LogNode, user: Caller, host: str, address: str
) -> None:
    assert node.pool is not None
    resp = await strict.post("/api/v1/webhooks", json={"url": PUBLIC}, headers=user.headers)
    assert resp.status == 201, await resp.text()
    path = f"/api/v1/webhooks/{(await resp.json())['id']}"
    before = await _state(node.pool)
    resp = await strict.patch(
        path, json={"url": f"http://{host}/hook", "enabled": False}, headers=user.headers
    )
    _assert_refused(resp.status, await resp.json(), address)
    assert await _state(node.pool) == before
    shown = await (await strict.get(path, headers=user.headers)).json()
    assert shown["url"] == PUBLIC and shown["enabled"] is True


@pytest.mark.parametrize("host", PUBLIC_CARRIERS)
async def test_carriers_of_a_public_ipv4_address_are_accepted(
    strict: TestClient[Any, Any], user: Caller, host: str
) -> None:
    resp = await strict.post(
        "/api/v1/webhooks", json={"url": f"https://{host}/hook"}, headers=user.headers
    )
    assert resp.status == 201, await resp.text()


async def test_a_host_name_that_resolves_to_loopback_is_refused_at_creation(
    strict: TestClient[Any, Any], node: LogNode, user: Caller, loopback_hostname: str
) -> None:
    assert node.pool is not None
    before = await _state(node.pool)
    url = f"http://{loopback_hostname}:8080/hook"
    resp = await strict.post("/api/v1/webhooks", json={"url": url}, headers=user.headers)
    body = await resp.json()
    _assert_refused(resp.status, body, body["error"]["details"].get("address", "?"))
    assert ipaddress.ip_address(body["error"]["details"]["address"]).is_loopback
    assert await _state(node.pool) == before


async def test_a_name_that_does_not_resolve_is_accepted_at_creation(
    strict: TestClient[Any, Any], user: Caller
) -> None:
    # `.invalid` never resolves (RFC 6761); the connect-time guard decides at delivery.
    resp = await strict.post(
        "/api/v1/webhooks", json={"url": "https://hooks.helix.invalid/x"}, headers=user.headers
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize("host", ["a..b.example", "x" * 64 + ".example"])
async def test_a_host_that_is_no_valid_name_is_refused_at_creation(
    strict: TestClient[Any, Any], node: LogNode, user: Caller, host: str
) -> None:
    assert node.pool is not None
    before = await _state(node.pool)
    resp = await strict.post(
        "/api/v1/webhooks", json={"url": f"https://{host}/x"}, headers=user.headers
    )
    body = await resp.json()
    assert resp.status == 422 and body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["message"].startswith("url must be an http(s) URL: a host name")
    assert await _state(node.pool) == before


@pytest.mark.parametrize(
    ("host", "address"), [("mixed.example", "127.0.0.1"), ("metadata.example", "169.254.169.254")]
)
async def test_a_name_is_refused_if_any_address_it_resolves_to_is_forbidden(
    node: LogNode, settings: Settings, user: Caller, host: str, address: str
) -> None:
    assert node.pool is not None
    resolver = StaticResolver(
        {
            "mixed.example": [["93.184.216.34", "127.0.0.1"]],
            "metadata.example": [["169.254.169.254"]],
            "public.example": [["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]],
        }
    )
    endpoints = Endpoints(node.store, settings, guard=AddressGuard(resolver=resolver))
    owner = user.service
    before = await _state(node.pool)
    with pytest.raises(ValidationError) as refused:
        await endpoints.create(owner, url=f"https://{host}/hook", event_types=["*"])
    assert refused.value.details["address"] == address
    assert f"{address} is in" in refused.value.message and SETTING in refused.value.message
    assert await _state(node.pool) == before

    row, _ = await endpoints.create(owner, url="https://public.example/hook", event_types=["*"])
    before = await _state(node.pool)
    with pytest.raises(ValidationError):
        await endpoints.update(owner, row["endpoint_id"], url=f"https://{host}/x")
    assert await _state(node.pool) == before

    allowing = AddressGuard(["127.0.0.0/8", "169.254.0.0/16"], resolver=resolver)
    await Endpoints(node.store, settings, guard=allowing).update(
        owner, row["endpoint_id"], url=f"https://{host}/x"
    )


async def test_an_allowed_network_is_exempt_at_creation_and_at_delivery(
    client: TestClient[Any, Any],
    user: Caller,
    receiver: Receiver,
    webhooks: WebhookRoles,
    make_projects: MakeProjects,
) -> None:
    # The node allows 127.0.0.0/8: spellings that read as loopback are registered and reached
    # (hex ones: the HTTP client itself refuses the other legacy forms).
    made = []
    for n, host in enumerate(["0x7f000001", "[::ffff:127.0.0.1]"]):
        resp = await client.post(
            "/api/v1/webhooks",
            json={"url": f"http://{host}:{receiver.port}/hook/{n}", "event_types": ["project.*"]},
            headers=user.headers,
        )
        assert resp.status == 201, await resp.text()
        made.append(await resp.json())
    resp = await client.patch(
        f"/api/v1/webhooks/{made[1]['id']}",
        json={"url": f"http://0x7f.1:{receiver.port}/hook/short"},
        headers=user.headers,
    )
    assert resp.status == 200, await resp.text()
    await make_projects(user, 1)
    await receiver.wait_for(lambda got: {g.path for g in got} >= {"/hook/0", "/hook/short"})


# --- at connect time, and what a refused delivery records -----------------------------------


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("10.0.0.1", "10.0.0.0/8"),
        ("169.254.169.254", "169.254.169.254/32"),
        ("[::1]", "::1/128"),
        ("localhost", "127.0.0.0/8"),
        ("127.1", "127.0.0.0/8"),
        ("[::ffff:127.0.0.1]", "127.0.0.0/8"),
    ],
)
async def test_a_request_to_a_refused_address_never_connects_and_says_why(
    settings: Settings, receiver: Receiver, host: str, network: str
) -> None:
    sender = Sender(attrs.evolve(settings, webhook_allowed_networks=()))
    outcome = await _send(sender, f"http://{host}:{receiver.port}/hook")
    assert outcome.status is None and outcome.error_class == "blocked_address"
    assert outcome.error is not None and network in outcome.error and SETTING in outcome.error
    assert receiver.received == []


async def test_a_name_resolving_to_loopback_at_delivery_is_refused_with_its_reason(
    settings: Settings, receiver: Receiver
) -> None:
    resolver = StaticResolver({"hooks.internal.test": [["127.0.0.1", "::1"]]})
    sender = Sender(settings, guard=AddressGuard(resolver=resolver))
    outcome = await _send(sender, f"http://hooks.internal.test:{receiver.port}/hook")
    assert outcome.error_class == "blocked_address" and outcome.error is not None
    assert "127.0.0.1 is in 127.0.0.0/8 (loopback)" in outcome.error
    assert "::1 is in ::1/128 (loopback)" in outcome.error and SETTING in outcome.error
    assert receiver.received == []


async def test_a_host_name_resolving_to_loopback_is_refused_by_the_connector(
    receiver: Receiver,
) -> None:
    guard = AddressGuard()
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://localhost:{receiver.port}/hook")
    assert isinstance(caught.value.os_error, BlockedAddress)
    assert "in 127.0.0.0/8 (loopback)" in str(caught.value)
    assert receiver.received == []


async def test_dns_rebinding_to_loopback_is_refused_at_connect_time(receiver: Receiver) -> None:
    resolver = StaticResolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    guard = AddressGuard(resolver=resolver)
    # The first answer (public) is what the registration-time lookup sees.
    await guard.vet_url(f"http://rebind.example:{receiver.port}/hook")
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://rebind.example:{receiver.port}/hook")
    assert isinstance(caught.value.os_error, BlockedAddress)
    assert receiver.received == []


async def test_an_allowed_network_is_reachable(settings: Settings, receiver: Receiver) -> None:
    sender = Sender(settings)  # allows 127.0.0.0/8
    outcome = await _send(sender, receiver.url)
    assert outcome.ok and len(receiver.received) == 1


@pytest.mark.parametrize("by", ["address", "host name"])
async def test_a_delivery_the_guard_refuses_records_the_guards_reason(
    request: pytest.FixtureRequest,
    client: TestClient[Any, Any],
    node: LogNode,
    settings: Settings,
    user: Caller,
    receiver: Receiver,
    make_projects: MakeProjects,
    by: str,
) -> None:
    """An endpoint registered while its network was allowed, delivered once it no longer is."""
    host = "127.0.0.1" if by == "address" else request.getfixturevalue("loopback_hostname")
    resp = await client.post(
        "/api/v1/webhooks",
        json={"url": f"http://{host}:{receiver.port}/hook", "event_types": ["project.*"]},
        headers=user.headers,
    )
    assert resp.status == 201, await resp.text()
    path = f"/api/v1/webhooks/{(await resp.json())['id']}/deliveries"
    strict = attrs.evolve(settings, webhook_allowed_networks=(), webhook_retry_schedule=(0,))
    roles = WebhookRoles(node.store, strict)
    await roles.start()
    try:
        await make_projects(user, 1)

        async def dead() -> bool:
            listed = await (await client.get(path, headers=user.headers)).json()
            return bool(listed["items"]) and listed["items"][0]["status"] == "dead"

        await wait_until(dead)
    finally:
        await roles.stop()
    delivery = (await (await client.get(path, headers=user.headers)).json())["items"][0]
    assert "in 127.0.0.0/8 (loopback)" in delivery["last_error"]
    assert SETTING in delivery["last_error"]
    shown = await (await client.get(f"{path}/{delivery['id']}", headers=user.headers)).json()
    [attempt] = shown["attempt_log"]
    assert shown["attempts"] == 1
    assert attempt["error_class"] == "blocked_address"
    assert attempt["error"] == delivery["last_error"]
    assert receiver.received == []
