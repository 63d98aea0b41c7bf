"""The SSRF guard at connect time: the address actually connected to is what is checked."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from webhook_support import Receiver

from helix.config import Settings
from helix.webhooks.sender import Sender
from helix.webhooks.ssrf import AddressGuard, BlockedAddress


class RebindingResolver(AbstractResolver):
    """A DNS server that answers a public address first and loopback afterwards."""

    def __init__(self) -> None:
        self.answers = ["93.184.216.34", "127.0.0.1"]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            {"hostname": host, "host": address, "port": port, "family": socket.AF_INET,
             "proto": 0, "flags": socket.AI_NUMERICHOST}
        ]  # fmt: skip

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "localhost"],
)
async def test_a_request_to_a_refused_address_never_connects(
    settings: Settings, receiver: Receiver, host: str
) -> None:
    sender = Sender(attrs.evolve(settings, webhook_allowed_networks=()))
    await sender.start()
    try:
        outcome = await sender.post(f"http://{host}:{receiver.port}/hook", b"{}", {})
    finally:
        await sender.stop()
    assert outcome.status is None and outcome.error_class == "blocked_address"
    assert receiver.received == []


async def test_a_host_name_resolving_to_loopback_is_refused_by_the_connector(
    receiver: Receiver,
) -> None:
    guard = AddressGuard()
    async with aiohttp.ClientSession(connector=guard.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://localhost:{receiver.port}/hook")
    assert isinstance(caught.value.os_error, BlockedAddress)
    assert receiver.received == []


async def test_dns_rebinding_to_loopback_is_refused_at_connect_time(receiver: Receiver) -> None:
    guard = AddressGuard()
    resolver = RebindingResolver()
    # The first answer (public) is what a validation-time lookup would have seen.
    first = await resolver.resolve("rebind.example", 80)
    assert guard.permits(ipaddress.ip_address(first[0]["host"]))
    connector: Any = guard.connector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.get(f"http://rebind.example:{receiver.port}/hook")
    assert isinstance(caught.value.os_error, BlockedAddress)
    assert receiver.received == []


async def test_an_allowed_network_is_reachable(settings: Settings, receiver: Receiver) -> None:
    sender = Sender(settings)  # allows 127.0.0.0/8
    await sender.start()
    try:
        outcome = await sender.post(receiver.url, b"{}", {"webhook-id": "x"})
    finally:
        await sender.stop()
    assert outcome.ok and len(receiver.received) == 1
