"""Which addresses the URL fallback may connect to: public unicast only, unless allow-listed.

Refused: loopback, private (RFC 1918, ULA), link-local (cloud metadata), CGNAT
(100.64/10), multicast, reserved, unspecified, documentation and benchmarking ranges,
IPv4-mapped and IPv4-compatible IPv6, and 6to4/NAT64 addresses whose embedded IPv4
address is refused. IPv6 outside 2000::/3 (the only global-unicast block) is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final, TypeAlias

from ._urls import shown

__all__ = ["AddressPolicy", "AllowEntry", "refusal_reason"]

IPAddress: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
IPNetwork: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
AllowEntry: TypeAlias = (
    "str | ipaddress.IPv4Network | ipaddress.IPv6Network | "
    "ipaddress.IPv4Address | ipaddress.IPv6Address"
)
"""An allow-list entry: a network, an address, or a host name (exact, case-insensitive)."""

_V4: Final[tuple[tuple[str, str], ...]] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6: Final[tuple[tuple[str, str], ...]] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b:1::/48", "private (local NAT64)"),
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "reserved"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "link-local"),
    ("ff00::/8", "multicast"),
)
_V4_NETS: Final = tuple((ipaddress.IPv4Network(n), why) for n, why in _V4)
_V6_NETS: Final = tuple((ipaddress.IPv6Network(n), why) for n, why in _V6)
_GLOBAL_UNICAST: Final = ipaddress.IPv6Network("2000::/3")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = ipaddress.IPv6Network("2002::/16")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 or 6to4 address reaches, if it is one."""
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def refusal_reason(ip: IPAddress) -> str | None:
    """None for a public unicast address, else the class that makes it refused."""
    if isinstance(ip, ipaddress.IPv6Address):
        for net6, why in _V6_NETS:
            if ip in net6:
                return why
        embedded = _embedded_v4(ip)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return None if inner is None else f"{inner} (embedded in IPv6)"
        if ip not in _GLOBAL_UNICAST or not ip.is_global:
            return "reserved"
        return None
    for net4, why in _V4_NETS:
        if ip in net4:
            return why
    return None if ip.is_global else "reserved"


class AddressPolicy:
    """The allow-list and the refusal rule for one fetcher.

    ``allow`` entries are networks or addresses (``ipaddress`` objects or strings such as
    ``"10.0.0.0/8"``) and host names (``"images.intranet"``: any address that exact name
    resolves to is allowed). Raises ``ValueError`` for an entry that is neither.
    """

    __slots__ = ("_hosts", "_networks")

    def __init__(self, allow: Iterable[AllowEntry] = ()) -> None:
        if isinstance(allow, (str, bytes)):
            allow = [allow]
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in allow:
            network = _as_network(entry)
            if network is not None:
                networks.append(network)
            else:
                hosts.add(_as_host(entry))
        self._networks = tuple(networks)
        self._hosts = frozenset(hosts)

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` (a name from a URL) is allow-listed by name."""
        return host.lower().rstrip(".") in self._hosts

    def refusal(self, ip: IPAddress) -> str | None:
        """None if the fetcher may connect to ``ip``, else the class that refuses it."""
        reason = refusal_reason(ip)
        if reason is None:
            return None
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for candidate in candidates:
            if any(candidate in net for net in self._networks):
                return None
        return reason


def _as_network(entry: object) -> IPNetwork | None:
    if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return entry
    if isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return ipaddress.ip_network(entry)
    if not isinstance(entry, str):
        raise ValueError(
            f"fallback_allow_private entries are networks, addresses or host names "
            f"(str or ipaddress objects), not {type(entry).__name__}"
        )
    try:
        return ipaddress.ip_network(entry.strip().strip("[]"), strict=False)
    except ValueError:
        return None


def _as_host(entry: object) -> str:
    assert isinstance(entry, str)
    host = entry.strip().lower().rstrip(".")
    if not host or any(c in host for c in "/:@ \t\r\n?#[]") or len(host) > 253:
        raise ValueError(
            f"fallback_allow_private entry {shown(entry)} is not a network (like "
            f"'10.0.0.0/8'), an address, or a host name (like 'images.intranet')"
        )
    return host
