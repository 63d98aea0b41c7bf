"""Which addresses and URLs the SSRF guard refuses."""

from __future__ import annotations

import ipaddress

import pytest

from helix.webhooks.ssrf import AddressGuard

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
    assert not AddressGuard().permits(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert AddressGuard().permits(ipaddress.ip_address(address))


def test_an_allowed_network_opens_exactly_its_addresses() -> None:
    guard = AddressGuard(["127.0.0.0/8", "::1/128"])
    assert guard.permits(ipaddress.ip_address("127.0.0.2"))
    assert guard.permits(ipaddress.ip_address("::1"))
    assert not guard.permits(ipaddress.ip_address("10.0.0.1"))


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
