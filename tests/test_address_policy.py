"""``AddressPolicy``: which resolved addresses the URL fallback may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from tupu_async._address_policy import AddressPolicy, refusal_reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.0.1", "private"),
        ("172.31.255.255", "private"),
        ("169.254.169.254", "link-local"),
        ("100.127.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("fd12:3456::1", "private"),
        ("ff05::2", "multicast"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("::10.0.0.1", "IPv4-compatible"),
        ("64:ff9b::7f00:1", "loopback (embedded in IPv6)"),
        ("2002:c0a8:101::1", "private (embedded in IPv6)"),
        ("4000::1", "reserved"),
    ],
)
def test_refused_classes_are_named(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::101:101", "2002:101:101::1"]
)
def test_public_unicast_is_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_allow_list_networks_addresses_and_names() -> None:
    policy = AddressPolicy(
        ["10.0.0.0/8", ipaddress.ip_network("fd00::/8"), "127.0.0.1", "Images.Intranet."]
    )

    assert policy.refusal(ipaddress.ip_address("10.9.8.7")) is None
    assert policy.refusal(ipaddress.ip_address("fd00::5")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert policy.host_allowed("images.intranet")
    assert policy.host_allowed("IMAGES.INTRANET.")
    assert not policy.host_allowed("evil.images.intranet")


def test_a_single_string_is_one_entry() -> None:
    policy = AddressPolicy("192.168.0.0/16")

    assert policy.refusal(ipaddress.ip_address("192.168.3.4")) is None
