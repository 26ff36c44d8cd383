"""A channel's destination resolved once, checked, and connected to at that very address.

Checking a webhook's host name and then letting httpx resolve it again to connect leaves a
window: a name that answers a public address to the check and 127.0.0.1 to the connection
(DNS rebinding) gets the POST. `pin_destination` resolves the name once, refuses it if any of
its addresses is loopback, private, link-local or metadata (`monitor.fetch.blocked_reason`, the
feed fetcher's rules), and returns the URL with the host replaced by the checked address, plus
the `Host` header and the TLS server name (httpx's `sni_hostname` extension, which is also the
name the certificate is verified against) of the original, so the receiver sees no difference.
The URL is a secret (it often holds a token) and never appears in an error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from monitor.addresses import blocked_reason
from monitor.errors import DeliveryError

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Pinned:
    """Where to send: `url` (host replaced by the checked address), with `headers` and
    `extensions` to pass to httpx for the request."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


async def pin_destination(channel: str, url: str, *, allow_private: bool) -> Pinned:
    """Resolve `url`'s host once and pin the connection to the address that was checked.

    `allow_private: true` on the channel opts out: the URL is used as it is.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise DeliveryError(f"channel {channel}: the URL has no host", permanent=True)
    if allow_private:
        return Pinned(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError as exc:
        reason = f"channel {channel}: the URL has an invalid port"
        raise DeliveryError(reason, permanent=True) from exc
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:  # an address cannot resolve to another one
        _check(channel, literal)
        return Pinned(url)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryError(f"channel {channel}: cannot resolve the host: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise DeliveryError(f"channel {channel}: the host resolves to no address")
    for address in addresses:  # every one, so a name answering public + private is refused
        _check(channel, address)
    pinned = addresses[0]
    shown = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += shown if parts.port is None else f"{shown}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Pinned(
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
        {"Host": host_header},
        extensions,
    )


def _check(channel: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    reason = blocked_reason(address)
    if reason is not None:
        raise DeliveryError(
            f"channel {channel}: the URL's host is a {reason} ({address}); "
            "set allow_private: true on the channel if that is intended",
            permanent=True,
        )
