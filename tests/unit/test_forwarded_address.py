"""Which address is the client's, from the TCP peer and X-Forwarded-For."""

from __future__ import annotations

import pytest

from helix.api.forwarded import client_address, networks, parse_address

TRUSTED = networks(("10.0.0.0/8", "fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # No proxy, or a peer that is no trusted proxy: the peer, whatever it claims.
        ("203.0.113.1", [], "203.0.113.1"),
        ("203.0.113.1", ["198.51.100.1"], "203.0.113.1"),
        # A trusted proxy: the rightmost address that is not a trusted proxy.
        ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.1.1.1"], "198.51.100.1"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # repeated headers
        ("fd00::1", ["[2001:db8::5]:4711"], "2001:db8::5"),
        ("10.0.0.2", ["198.51.100.1:8080"], "198.51.100.1"),
        ("::ffff:10.0.0.2", ["::ffff:198.51.100.1"], "198.51.100.1"),
        # A trusted proxy that forwarded nothing, or no address: the nearest trusted hop.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["10.0.0.3"], "10.0.0.3"),
        ("10.0.0.2", ["198.51.100.1, garbage, 10.0.0.3"], "10.0.0.3"),
    ],
)
def test_the_client_is_the_rightmost_address_no_trusted_proxy_wrote(
    peer: str, headers: list[str], client: str
) -> None:
    assert client_address(peer, headers, TRUSTED) == client


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_address("10.0.0.2", ["198.51.100.1"], ()) == "10.0.0.2"
    assert client_address(None, ["198.51.100.1"], TRUSTED) is None


@pytest.mark.parametrize("raw", ["", "unknown", "1.2.3", "[::1", "_hidden"])
def test_what_is_no_address_parses_to_none(raw: str) -> None:
    assert parse_address(raw) is None
