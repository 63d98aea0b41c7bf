"""The SSRF guard: webhook requests never reach loopback, private, link-local, multicast,
unspecified, reserved or cloud-metadata addresses, unless a configured network allows them.

One rule (`AddressGuard.refusal`) decides for every address, wherever it comes from: a URL's
literal host when an endpoint is created or changed, what its name resolves to at that moment,
and what the connector is about to connect to at delivery. The connect-time check is the one
that holds: it runs on the addresses resolved inside aiohttp's connector, so a name that
resolves to an allowed address when the endpoint is registered and to a forbidden one later
(DNS rebinding) is still refused. The earlier checks only make the mistake show at once.

Hosts are read the way the resolver reads them: the inet_aton forms of IPv4 (`127.1`,
`0x7f000001`, `2130706433`, `0177.0.0.1`), trailing dots, IPv6 with a zone, and IPv6 addresses
that carry an IPv4 address a tunnel or translator delivers to (IPv4-mapped, 6to4, Teredo,
NAT64), whose verdict is the carried address's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from aiohttp import TCPConnector, ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
# The URLs a webhook may be registered with, as a JSON-schema pattern the OpenAPI document
# shows and `vet_url` enforces: http(s), a host name or IPv4 address (labels of 1 to 63
# letters, digits and hyphens) or a bracketed IPv6 address, an optional port, path and query,
# no user info, no fragment.
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
_PATH_CHARS = "-A-Za-z0-9._~!$&'()*+,;=:@%/"
_H = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = f"({_OCTET}\\.){{3}}{_OCTET}"
_IPV6 = "|".join(
    [
        f"({_H}:){{7}}{_H}",
        f"({_H}:){{1,7}}:",
        *(f"({_H}:){{1,{7 - n}}}(:{_H}){{{n}}}" for n in range(1, 7)),
        f":(:{_H}){{1,7}}",
        "::",
        f"({_H}:){{6}}{_V4}",
        *(
            f"{f'({_H}:){{{head - 1}}}{_H}' if head else ''}::({_H}:){{{tail}}}{_V4}"
            for head in range(6)
            for tail in range(6 - head)
        ),
    ]
)
URL_PATTERN = (
    "^[Hh][Tt][Tt][Pp][Ss]?://"
    f"([A-Za-z0-9-]{{1,63}}(\\.[A-Za-z0-9-]{{1,63}})*\\.?|\\[({_IPV6})\\])"
    f"(:({_PORT}))?"
    f"(/[{_PATH_CHARS}]*)?"
    f"(\\?[{_PATH_CHARS}?]*)?$"
)
_URL = re.compile(URL_PATTERN.removesuffix("$") + "\\Z")
SETTING = "HELIX_WEBHOOK_ALLOWED_NETWORKS"
# The lookup at registration only reports a mistake early (the connect-time guard is the one
# that holds), so a slow resolver must not hold the request for long.
RESOLVE_TIMEOUT = 2.0

_V4_LOOPBACK = ipaddress.ip_address("127.0.0.1")
_V6_LOOPBACK = ipaddress.ip_address("::1")
# RFC 6761 reserves `localhost` and `*.localhost` for loopback; the others are the loopback
# aliases common /etc/hosts files ship. They are refused by name, whatever this host resolves.
LOOPBACK_NAMES: dict[str, tuple[IPAddress, ...]] = {
    "localhost": (_V4_LOOPBACK, _V6_LOOPBACK),
    "localhost.localdomain": (_V4_LOOPBACK, _V6_LOOPBACK),
    "localhost4": (_V4_LOOPBACK,),
    "localhost4.localdomain4": (_V4_LOOPBACK,),
    "localhost6": (_V6_LOOPBACK,),
    "localhost6.localdomain6": (_V6_LOOPBACK,),
    "ip6-localhost": (_V6_LOOPBACK,),
    "ip6-loopback": (_V6_LOOPBACK,),
}


def _ranges(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in pairs)


# The first range holding an address names it, so the narrow ones come first. IPv6 outside
# 2000::/3 is not global unicast; 2001::/32 (Teredo), 2002::/16 (6to4), ::ffff:0:0/96 and
# 64:ff9b::/96 (NAT64) are judged by the IPv4 address they carry (see `embedded_ipv4`).
FORBIDDEN = _ranges(
    ("169.254.169.254/32", "cloud metadata"),
    ("100.100.100.200/32", "cloud metadata"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible, deprecated"),
    ("64:ff9b:1::/48", "local-use NAT64"),  # its mapping is the local network's own choice
    ("::/8", "reserved"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
)
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)


@attrs.frozen
class Refusal:
    """Why an address is refused: the range holding it, and the IPv6 address that carries it
    when it was embedded in one."""

    address: IPAddress
    network: Network
    label: str
    carrier: str = ""

    def __str__(self) -> str:
        where = f"in {self.network} ({self.label})"
        if self.carrier:
            return f"{self.carrier} carries {self.address}, which is {where}"
        return f"{self.address} is {where}"


class BlockedURL(ValueError):
    """A webhook URL whose host is, stands for or resolves to a refused address."""

    def __init__(self, host: str, how: str, refusal: Refusal) -> None:
        super().__init__(
            f"the URL's host {host} {how}: {refusal}; webhooks may not reach it unless "
            f"{SETTING} allows {refusal.network}"
        )
        self.refusal = refusal


class BlockedAddress(OSError):
    """At connect time: a host that resolves only to addresses the guard refuses."""

    def __init__(self, host: str, refusals: Sequence[Refusal]) -> None:
        reasons = "; ".join(dict.fromkeys(str(r) for r in refusals))
        message = f"{host} resolves only to refused addresses ({reasons}); see {SETTING}"
        super().__init__(message)
        self.strerror = message  # what aiohttp's connection error shows
        self.refusals = tuple(refusals)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def forbidden_range(address: IPAddress) -> Refusal | None:
    """The forbidden range holding `address` itself (embedded addresses aside)."""
    for network, label in FORBIDDEN:
        if network.version == address.version and address in network:
            return Refusal(address, network, label)
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST:
        return Refusal(address, GLOBAL_UNICAST, "outside global unicast")
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]]:
    """How `address` carries IPv4 addresses that a tunnel or translator would deliver to, and
    which ones ('' and none if it carries none). Teredo carries its server and its client (whose
    bits are inverted in the last 32)."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return "6to4", (address.sixtofour,)
    if address.teredo is not None:
        return "Teredo", address.teredo
    if address in NAT64:
        return "NAT64", (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    return "", ()


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host is written as, read as the resolver reads it: IPv6 with or
    without brackets and a zone, IPv4 in every inet_aton form, trailing dots ignored."""
    host = host.strip("[]").rstrip(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    if not _INET_ATON.fullmatch(host):  # inet_aton would also read "1.2.3.4 anything"
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def loopback_name(host: str) -> tuple[IPAddress, ...]:
    """The loopback addresses a reserved loopback name stands for (none for other names)."""
    name = host.rstrip(".").lower()
    if name.endswith(".localhost"):
        name = "localhost"
    return LOOPBACK_NAMES.get(name, ())


class AddressGuard:
    def __init__(
        self, allowed: Sequence[str] = (), *, resolver: AbstractResolver | None = None
    ) -> None:
        self.allowed = parse_networks(allowed)
        self.resolver = resolver  # None: getaddrinfo to vet names, aiohttp's default to connect

    def _allows(self, address: IPAddress) -> bool:
        return any(address in net for net in self.allowed if net.version == address.version)

    def refusal(self, address: IPAddress) -> Refusal | None:
        """Why the guard refuses `address`, or None if it permits it."""
        if self._allows(address):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            how, carried = embedded_ipv4(address)
            if how:
                for inner in carried:
                    found = self.refusal(inner)
                    if found is not None:
                        return attrs.evolve(found, carrier=f"{address} ({how})")
                return None
        return forbidden_range(address)

    def check_url(self, raw: str) -> URL:
        """The URL if its scheme is http(s) and its host is neither a refused literal address
        nor a loopback name; ValueError (BlockedURL for a refused host) otherwise. Other names
        are checked by `vet_url` and again at connect time."""
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
        if literal is not None:
            self._refuse(host, "is an address" if str(literal) == host else "reads as an address",
                         [literal])  # fmt: skip
        self._refuse(host, "is a loopback name", loopback_name(host))
        return url

    async def vet_url(self, raw: str) -> URL:
        """`check_url`, then the host name resolved now: refused if any address it resolves to
        is. A name that does not resolve (in time) passes; the connect-time guard decides.
        This is the check of a URL being registered, so it must also be one `URL_PATTERN`
        takes (an endpoint registered before that rule keeps its URL)."""
        if not raw.lower().startswith(("http://", "https://")):
            raise ValueError("only http and https URLs are allowed")
        if not _URL.match(raw):
            raise ValueError(
                "not a URL Helix delivers to: http(s)://, a host name or an IP address, and an"
                " optional port, path and query (no user info, no fragment)"
            )
        url = self.check_url(raw)
        host = url.raw_host
        assert host is not None
        if literal_address(host) is not None or loopback_name(host):
            return url
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                resolver = self.resolver or ThreadedResolver()
                resolved = await resolver.resolve(host, url.port or 0, socket.AF_UNSPEC)
        except UnicodeError:  # a label empty or over 63 characters: no resolver takes it
            raise ValueError(f"the URL's host {host} is not a valid host name") from None
        except (OSError, TimeoutError):
            return url
        self._refuse(host, "resolves to a refused address",
                     [ipaddress.ip_address(r["host"]) for r in resolved])  # fmt: skip
        return url

    def _refuse(self, host: str, how: str, addresses: Iterable[IPAddress]) -> None:
        for address in addresses:
            found = self.refusal(address)
            if found is not None:
                raise BlockedURL(host, how, found)

    def connector(self, **kwargs: Any) -> GuardedConnector:
        if self.resolver is not None:
            kwargs.setdefault("resolver", self.resolver)
        return GuardedConnector(self, use_dns_cache=False, **kwargs)


class GuardedConnector(TCPConnector):
    """A TCP connector that drops every resolved address the guard refuses (IP literals go
    through the same hook), and fails the connection when none is left."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        resolved = await super()._resolve_host(host, port, traces=traces)
        permitted: list[ResolveResult] = []
        refusals: list[Refusal] = []
        for result in resolved:
            refusal = self._guard.refusal(ipaddress.ip_address(result["host"]))
            if refusal is None:
                permitted.append(result)
            else:
                refusals.append(refusal)
        if not permitted:
            raise BlockedAddress(host, refusals)
        return permitted
