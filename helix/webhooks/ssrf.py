"""The SSRF guard: webhook requests never reach loopback, private, link-local, multicast,
unspecified, reserved or cloud-metadata addresses, unless a configured network allows them.

The check runs on the addresses the connector is about to connect to (after DNS resolution,
inside aiohttp's connector), so a name that resolves to an allowed address at validation time
and to a forbidden one at delivery time (DNS rebinding) is still refused. Endpoint validation
also refuses URLs whose host is a literal forbidden address, so the mistake shows at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import TCPConnector
from aiohttp.abc import ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# Shared address space (RFC 6598, carrier-grade NAT) is not flagged private by ipaddress.
SHARED = ipaddress.ip_network("100.64.0.0/10")


class BlockedAddress(OSError):
    """A webhook URL's host is, or resolves only to, addresses the guard refuses."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


class AddressGuard:
    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed = parse_networks(allowed)

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed if net.version == address.version):
            return True
        return not forbidden(address)

    def check_url(self, raw: str) -> URL:
        """The URL if its scheme is http(s) and its host is not a forbidden literal address;
        ValueError otherwise. Host names are checked again at connect time."""
        try:
            url = URL(raw)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in SCHEMES:
            raise ValueError("only http and https URLs are allowed")
        host = url.raw_host
        if not host:
            raise ValueError("the URL has no host")
        literal = literal_address(host)
        if literal is not None and not self.permits(literal):
            raise ValueError(f"the address {literal} is not allowed for webhooks")
        loopback = ipaddress.ip_address("127.0.0.1")
        if host.rstrip(".").lower() in LOCAL_NAMES and not self.permits(loopback):
            raise ValueError("localhost is not allowed for webhooks")
        return url

    def connector(self, **kwargs: Any) -> GuardedConnector:
        return GuardedConnector(self, use_dns_cache=False, **kwargs)


def forbidden(address: IPAddress) -> bool:
    return (
        address in METADATA
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in SHARED)
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class GuardedConnector(TCPConnector):
    """A TCP connector that drops every resolved address the guard refuses (IP literals go
    through the same hook), and fails the connection when none is left."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        resolved = await super()._resolve_host(host, port, traces=traces)
        permitted = [r for r in resolved if self._guard.permits(ipaddress.ip_address(r["host"]))]
        if not permitted:
            addresses = ", ".join(sorted({r["host"] for r in resolved}))
            raise BlockedAddress(f"{host} resolves only to refused addresses ({addresses})")
        return permitted
