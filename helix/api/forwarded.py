"""The client's address: the TCP peer, or, when the peer is a trusted proxy, the address that
proxy forwarded in `X-Forwarded-For`.

Each proxy appends the address it received the request from, so the list reads client, proxy 1,
proxy 2 … and only its right end was written by proxies Helix trusts. Walking it from the right,
skipping trusted proxies, the first other address is the client as the outermost trusted proxy
saw it; anything further left was written by that client and may be forged.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The trusted networks (checked when the settings were read), parsed once."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_address(raw: str) -> Address | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`), or None."""
    text = raw.strip().strip('"')
    if text.startswith("["):
        inside, closed, _ = text[1:].partition("]")
        if not closed:
            return None
        text = inside
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address for a request from `peer` carrying these X-Forwarded-For headers."""
    peer_address = parse_address(peer) if peer else None
    if peer_address is None or not _trusted(peer_address, trusted):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    nearest = peer_address
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # a trusted proxy forwarded something that is no address: stop at that proxy
        nearest = address
        if not _trusted(address, trusted):
            break
    return str(nearest)
