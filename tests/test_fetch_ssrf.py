"""The SSRF guard: non-public addresses are refused before any connection is attempted."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator

import pytest
from daemons import connect_spy
from hostile_server import HostileServer, fixed, redirect

import monitor.fetch
from monitor.config import FetchSettings
from monitor.fetch import BlockedAddress, Fetcher, blocked_reason


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect(2) the event loop makes in this test; one to a non-loopback address
    is refused unsent."""
    return connect_spy(monkeypatch)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        srv.routes["/feed"] = fixed(200, b"<rss/>")
        yield srv


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchSettings()) as f:
        yield f


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback address (embedded in IPv6"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata address (embedded in IPv6"),
        ("2002:0a00:0001::", "private address (embedded in IPv6"),
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None
    assert found.startswith(reason)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("127.0.0.1", "127.0.0.1: loopback"),
        ("[::1]", "::1: loopback"),
        ("10.0.0.1", "10.0.0.1: private"),
        ("169.254.169.254", "169.254.169.254: cloud metadata"),
        ("localhost", "localhost -> "),
        ("[::ffff:127.0.0.1]", "loopback address (embedded"),
        ("2130706433", "-> 127.0.0.1: loopback"),
    ],
)
async def test_links_to_non_public_hosts_are_refused_before_connecting(
    fetcher: Fetcher,
    server: HostileServer,
    connects: list[tuple[str, int]],
    host: str,
    named: str,
) -> None:
    with pytest.raises(BlockedAddress, match="refused to connect") as info:
        await fetcher.fetch(f"http://{host}:{server.port}/feed")
    assert named in str(info.value)
    assert info.value.kind == "blocked"
    assert connects == []
    assert server.connections == 0


async def test_allow_private_reaches_a_loopback_feed(
    fetcher: Fetcher, server: HostileServer
) -> None:
    result = await fetcher.fetch(server.url("/feed"), allow_private=True)
    assert result.body == b"<rss/>"


async def test_an_allowed_private_connection_is_not_reused_by_a_guarded_request(
    fetcher: Fetcher, server: HostileServer
) -> None:
    await fetcher.fetch(server.url("/feed"), allow_private=True)
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(server.url("/feed"))
    assert server.connections == 1


async def test_a_name_resolving_to_public_and_private_addresses_is_refused(
    fetcher: Fetcher, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.1"]  # a rebinding name answering both

    monkeypatch.setattr(monitor.fetch, "_resolve", resolve)
    with pytest.raises(BlockedAddress, match=r"news\.example -> 10\.0\.0\.1: private"):
        await fetcher.fetch("http://news.example/feed")
    assert connects == []


async def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    fetcher: Fetcher, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first hop must pass the guard yet stay on this machine: `news.example` resolves to
    # 127.0.0.1 and exactly that address is let through; the redirect target 127.0.0.2 is
    # another loopback address, served by a second server that must never see a connection.
    real_reason = monitor.fetch.blocked_reason

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "news.example" else [host]

    def reason(ip: monitor.fetch.IPAddress, *, allow_private: bool = False) -> str | None:
        if ip == ipaddress.ip_address("127.0.0.1"):
            return None
        return real_reason(ip, allow_private=allow_private)

    monkeypatch.setattr(monitor.fetch, "_resolve", resolve)
    monkeypatch.setattr(monitor.fetch, "blocked_reason", reason)
    with HostileServer("127.0.0.1") as first, HostileServer("127.0.0.2") as target:
        target.routes["/feed"] = fixed(200, b"<rss/>")
        first.routes["/feed"] = redirect(302, target.url("/feed"))
        with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2: loopback"):
            await fetcher.fetch(f"http://news.example:{first.port}/feed")
    assert len(first.requests) == 1
    assert first.requests[0].headers["host"] == f"news.example:{first.port}"
    assert target.connections == 0
    assert connects == [("127.0.0.1", first.port)]
