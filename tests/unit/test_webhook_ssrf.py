"""Which addresses and URLs the SSRF guard refuses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helix.webhooks.ssrf import SETTING, AddressGuard, BlockedURL

REFUSED = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert AddressGuard().refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert AddressGuard().refusal(ipaddress.ip_address(address)) is None


def test_an_allowed_network_opens_exactly_its_addresses() -> None:
    guard = AddressGuard(["127.0.0.0/8", "::1/128"])
    assert guard.refusal(ipaddress.ip_address("127.0.0.2")) is None
    assert guard.refusal(ipaddress.ip_address("::1")) is None
    assert guard.refusal(ipaddress.ip_address("10.0.0.1")) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/",
        "http://[::1]:8080/",
        "http://localhost/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_urls_with_refused_literal_hosts_or_schemes_are_invalid(url: str) -> None:
    with pytest.raises(ValueError):
        AddressGuard().check_url(url)


def test_public_http_and_https_urls_are_valid() -> None:
    guard = AddressGuard()
    guard.check_url("https://hooks.example.com/helix")
    guard.check_url("http://93.184.216.34:8080/x")


# --- hosts read the way the resolver reads them -------------------------------------------

FORBIDDEN_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
PUBLIC_V4 = ["1.0.0.0/8", "8.8.0.0/16", "45.0.0.0/8", "93.184.0.0/16", "151.101.0.0/16"]
TEREDO_SERVER = 0x4136E378  # 65.54.227.120, a public Teredo server


def addresses_in(cidrs: list[str]) -> st.SearchStrategy[ipaddress.IPv4Address]:
    def within(cidr: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
        net = ipaddress.IPv4Network(cidr)
        low = int(net.network_address)
        return st.integers(low, low + net.num_addresses - 1).map(ipaddress.IPv4Address)

    return st.sampled_from(cidrs).flatmap(within)


def spellings(address: ipaddress.IPv4Address) -> list[str]:
    """Every way a URL host can spell an IPv4 address that inet_aton reads as it, and the IPv6
    literals that carry it: IPv4-mapped, 6to4, NAT64 and Teredo (the client, bits inverted)."""
    n = int(address)
    a, b, c, d = address.packed
    teredo = (0x2001_0000 << 96) | (TEREDO_SERVER << 64) | (0x8000 << 48) | (0x63BF << 32)
    return [
        str(address),
        f"{address}.",
        str(n),
        hex(n),
        "0" + format(n, "o"),
        ".".join("0" + format(x, "o") for x in (a, b, c, d)),
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"[::ffff:{address}]",
        f"[{ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)}]",
        f"[64:ff9b::{address}]",
        f"[{ipaddress.IPv6Address(teredo | (~n & 0xFFFF_FFFF))}]",
    ]


@given(addresses_in(FORBIDDEN_V4))
def test_every_spelling_of_a_forbidden_ipv4_address_is_refused(
    address: ipaddress.IPv4Address,
) -> None:
    guard = AddressGuard()
    for host in spellings(address):
        with pytest.raises(BlockedURL) as refused:
            guard.check_url(f"http://{host}:8080/hook")
        assert str(address) in str(refused.value) and SETTING in str(refused.value), host
    with pytest.raises(BlockedURL):  # IPv4-compatible: deprecated, refused whatever it holds
        guard.check_url(f"http://[::{address}]/hook")


@given(addresses_in(PUBLIC_V4))
def test_every_spelling_of_a_public_ipv4_address_is_accepted(
    address: ipaddress.IPv4Address,
) -> None:
    guard = AddressGuard()
    for host in spellings(address):
        guard.check_url(f"https://{host}/hook")


@given(addresses_in(["127.0.0.0/8", "10.0.0.0/8"]))
def test_an_allowed_network_is_allowed_however_its_addresses_are_spelled(
    address: ipaddress.IPv4Address,
) -> None:
    guard = AddressGuard(["127.0.0.0/8", "10.0.0.0/8"])
    for host in spellings(address):
        guard.check_url(f"http://{host}/hook")


@pytest.mark.parametrize(
    ("host", "address", "network"),
    [
        ("127.1", "127.0.0.1", "127.0.0.0/8"),
        ("0x7f000001", "127.0.0.1", "127.0.0.0/8"),
        ("2130706433", "127.0.0.1", "127.0.0.0/8"),
        ("017700000001", "127.0.0.1", "127.0.0.0/8"),
        ("0177.0.0.1", "127.0.0.1", "127.0.0.0/8"),
        ("127.0.0.1.", "127.0.0.1", "127.0.0.0/8"),
        ("0", "0.0.0.0", "0.0.0.0/8"),
        ("localhost6", "::1", "::1/128"),
        ("foo.localhost", "127.0.0.1", "127.0.0.0/8"),
        ("FOO.LocalHost.", "127.0.0.1", "127.0.0.0/8"),
        ("ip6-localhost", "::1", "::1/128"),
        ("[::127.0.0.1]", "::7f00:1", "::/96"),
        ("[fe80::1%25eth0]", "fe80::1", "fe80::/10"),
        ("[2002:a9fe:a9fe::1]", "169.254.169.254", "169.254.169.254/32"),
        ("[2001:0:4136:e378:8000:63bf:f5ff:fffe]", "10.0.0.1", "10.0.0.0/8"),
        ("[64:ff9b::192.168.0.1]", "192.168.0.1", "192.168.0.0/16"),
        ("[64:ff9b:1::5db8:d822]", "64:ff9b:1::5db8:d822", "64:ff9b:1::/48"),
        ("[2001:db8::1]", "2001:db8::1", "2001:db8::/32"),
        ("[100::1]", "100::1", "100::/64"),
        ("[4000::1]", "4000::1", "2000::/3"),
    ],
)
def test_a_refusal_names_the_address_its_range_and_the_setting(
    host: str, address: str, network: str
) -> None:
    with pytest.raises(BlockedURL) as refused:
        AddressGuard().check_url(f"http://{host}/hook")
    message = str(refused.value)
    assert refused.value.refusal.address == ipaddress.ip_address(address)
    assert str(refused.value.refusal.network) == network
    assert address in message and network in message and SETTING in message


def test_a_loopback_name_is_refused_unless_every_address_it_stands_for_is_allowed() -> None:
    with pytest.raises(BlockedURL):
        AddressGuard(["127.0.0.0/8"]).check_url("http://localhost/")
    AddressGuard(["127.0.0.0/8"]).check_url("http://localhost4/")
    AddressGuard(["127.0.0.0/8", "::1/128"]).check_url("http://app.localhost/")
