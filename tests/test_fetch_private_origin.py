"""`allow_private` opens one origin, decided at every hop.

A feed that opts in to a private address may reach its own scheme, host and port, and nothing
else: a redirect (from the feed URL itself or from one of its pages) to any other private
address, another port of the same host included, gets the full SSRF guard, and a cloud metadata
address is refused even as the opted-in origin. A "canary" server stands in for the internal
service an attacker wants: it must never see a connection.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from daemons import connect_spy
from hostile_server import HostileServer, fixed, redirect

import monitor.fetch
from monitor.config import FetchSettings
from monitor.fetch import BlockedAddress, Fetcher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connect(2) the event loop makes in this test; one to a non-loopback address
    is refused unsent."""
    return connect_spy(monkeypatch)


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    async with Fetcher(FetchSettings()) as f:
        yield f


@pytest.fixture
def site() -> Iterator[HostileServer]:
    with HostileServer("127.0.0.1") as srv:
        srv.routes["/feed"] = fixed(200, b"<rss/>")
        srv.routes["/page"] = fixed(200, b"<html>own page</html>")
        srv.routes["/moved"] = redirect(302, "/page")
        yield srv


@pytest.fixture
def canary() -> Iterator[HostileServer]:
    """An internal service on another loopback address: records any hit."""
    with HostileServer("127.0.0.2") as srv:
        srv.routes["/secret"] = fixed(200, b"internal secret")
        yield srv


@pytest.fixture
def canary_same_host() -> Iterator[HostileServer]:
    """An internal service on the feed's host but another port."""
    with HostileServer("127.0.0.1") as srv:
        srv.routes["/secret"] = fixed(200, b"internal secret")
        yield srv


async def test_a_page_on_the_feed_origin_is_fetched(fetcher: Fetcher, site: HostileServer) -> None:
    result = await fetcher.fetch(site.url("/page"), private_origin=site.url("/feed"))
    assert result.body == b"<html>own page</html>"


async def test_a_redirect_that_stays_on_the_feed_origin_is_followed(
    fetcher: Fetcher, site: HostileServer
) -> None:
    result = await fetcher.fetch(site.url("/moved"), private_origin=site.url("/feed"))
    assert result.final_url == site.url("/page")


async def test_a_page_redirecting_to_another_private_address_is_refused(
    fetcher: Fetcher, site: HostileServer, canary: HostileServer
) -> None:
    site.routes["/evil"] = redirect(302, canary.url("/secret"))
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2: loopback"):
        await fetcher.fetch(site.url("/evil"), private_origin=site.url("/feed"))
    assert len(site.requests) == 1
    assert canary.connections == 0


async def test_a_redirect_to_another_port_of_the_same_host_is_refused(
    fetcher: Fetcher, site: HostileServer, canary_same_host: HostileServer
) -> None:
    site.routes["/evil"] = redirect(302, canary_same_host.url("/secret"))
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.1: loopback"):
        await fetcher.fetch(site.url("/evil"), private_origin=site.url("/feed"))
    assert canary_same_host.connections == 0


async def test_a_link_to_another_port_of_the_same_host_is_refused(
    fetcher: Fetcher, site: HostileServer, canary_same_host: HostileServer
) -> None:
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(canary_same_host.url("/secret"), private_origin=site.url("/feed"))
    assert canary_same_host.connections == 0


async def test_the_feed_url_itself_redirecting_to_another_private_address_is_refused(
    fetcher: Fetcher, site: HostileServer, canary: HostileServer
) -> None:
    site.routes["/feed"] = redirect(301, canary.url("/secret"))
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2: loopback"):
        await fetcher.fetch(site.url("/feed"), allow_private=True)
    assert canary.connections == 0


async def test_a_change_of_scheme_leaves_the_origin(
    fetcher: Fetcher, site: HostileServer, connects: list[tuple[str, int]]
) -> None:
    site.routes["/tls"] = redirect(302, f"https://127.0.0.1:{site.port}/page")
    with pytest.raises(BlockedAddress, match="loopback"):
        await fetcher.fetch(site.url("/tls"), private_origin=site.url("/feed"))
    assert connects == [("127.0.0.1", site.port)]  # the https hop never connected


async def test_a_guarded_hop_after_an_opted_in_one_does_not_reuse_its_pool(
    fetcher: Fetcher, site: HostileServer
) -> None:
    # A redirect from a public page back to the private feed origin: that hop is on the
    # origin, so it may pass; but a plain guarded fetch of the origin must still be refused
    # after the opted-in connection was pooled.
    await fetcher.fetch(site.url("/page"), private_origin=site.url("/feed"))
    with pytest.raises(BlockedAddress):
        await fetcher.fetch(site.url("/page"))
    assert site.connections == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
async def test_a_metadata_address_is_refused_even_as_the_opted_in_origin(
    fetcher: Fetcher, connects: list[tuple[str, int]], url: str
) -> None:
    with pytest.raises(BlockedAddress, match="cloud metadata"):
        await fetcher.fetch(url, allow_private=True)
    assert connects == []


async def test_a_name_on_the_origin_resolving_to_metadata_is_refused(
    fetcher: Fetcher, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["10.0.0.5", "169.254.169.254"]

    monkeypatch.setattr(monitor.fetch, "_resolve", resolve)
    with pytest.raises(BlockedAddress, match=r"intranet\.example -> 169\.254\.169\.254"):
        await fetcher.fetch("http://intranet.example/feed", allow_private=True)
    assert connects == []


RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Intranet</title><link>{base}/</link>
<item><title>Own page</title><link>{base}/page</link><guid>own</guid></item>
<item><title>Moved elsewhere</title><link>{base}/evil</link><guid>evil</guid></item>
<item><title>Other port</title><link>{other}</link><guid>port</guid></item>
</channel></rss>
"""


@pytest.mark.slow
def test_monitor_once_fetches_own_pages_but_not_the_canary(
    tmp_path: Path,
    site: HostileServer,
    canary: HostileServer,
    canary_same_host: HostileServer,
) -> None:
    site.routes["/feed"] = fixed(
        200,
        RSS.format(base=site.url(""), other=canary_same_host.url("/secret")).encode(),
        Content_Type="application/rss+xml",
    )
    site.routes["/page"] = fixed(
        200,
        b"<html><body><article><p>" + b"Own words here. " * 40 + b"</p></article></body></html>",
    )
    site.routes["/evil"] = redirect(302, canary.url("/secret"))
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
feeds:
  - {{url: "{site.url("/feed")}", name: Intranet, allow_private: true}}
rules:
  - {{name: anything, query: "own OR moved OR port"}}
""")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert canary.connections == 0
    assert canary_same_host.connections == 0
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        rows = dict(db.execute("SELECT title, extract_error FROM articles"))
    assert rows["Own page"] is None
    assert "[blocked]" in rows["Moved elsewhere"] and "127.0.0.2" in rows["Moved elsewhere"]
    assert "[blocked]" in rows["Other port"]
