"""Which addresses the SSRF guard refuses: loopback, private, link-local, metadata, and the
spellings that hide them (IPv4 inside IPv6). Pure, with no HTTP client, so that `monitor
check` and the notifiers can classify addresses without loading the fetcher."""

from __future__ import annotations

import ipaddress

_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud metadata
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def blocked_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why the guard refuses `ip` (e.g. "loopback"), or None if it is a public address.

    `allow_private` (a hop that stays on the origin a feed opted in for) lets every address
    through except cloud metadata addresses, which are never fetched.
    """
    if ip in _METADATA:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner, allow_private=allow_private)
            return f"{reason} (embedded in IPv6 {ip})" if reason else None
    if allow_private:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return "scoped IPv6 address"
    for attr, reason in (
        ("is_unspecified", "unspecified address"),
        ("is_loopback", "loopback address"),
        ("is_link_local", "link-local address"),
        ("is_multicast", "multicast address"),
        ("is_reserved", "reserved address"),
        ("is_private", "private address"),
    ):
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None
