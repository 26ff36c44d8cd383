"""Source health: a feed failing for `fetch.broken_after` is reported broken, once, to the
channels with `health: true`; its first good poll afterwards reports it recovered, once.

The real pipeline and store against a loopback server, on a test clock so hours pass at once;
the events are read from the outbox (the daemon test sees them reach a webhook receiver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.daemon import Runtime, load_checked
from monitor.store import FeedState
from tests.hostile_server import HostileServer, RequestHandler, send

pytestmark = pytest.mark.slow

T0 = 1_800_000_000.0
MINUTE = 60.0
FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
    b"<link>http://127.0.0.1/</link><description>d</description>"
    b"<item><title>One</title><guid>one</guid></item></channel></rss>"
)


class Switch:
    """HTTP 503 while `down`, else a valid feed."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self, h: RequestHandler) -> None:
        if self.down:
            send(h, 503, b"maintenance")
        else:
            send(h, 200, FEED, {"Content-Type": "application/rss+xml"})


class Clocked:
    """A Runtime whose pipeline runs on a test clock."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.now = T0
        rt.pipeline.clock = lambda: self.now

    def poll_at(self, minutes: float) -> FeedState:
        self.now = T0 + minutes * MINUTE

        async def go() -> None:
            feeds = self.rt.store.feeds.lease_due(self.rt.owner, limit=1, lease=300, now=self.now)
            assert len(feeds) == 1, f"the feed is not due at +{minutes} min"
            polled = await self.rt.pipeline.poll(feeds[0], self.rt.owner)
            await self.rt.pipeline.commit(polled)

        asyncio.run(go())
        return self.rt.store.feeds.all()[0]

    def events(self) -> list[tuple[str, str]]:
        rows = self.rt.store.outbox.list_deliveries(limit=1000)
        return sorted((d.kind, d.channel) for d in rows)


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def clocked(tmp_path: Path, switch: Switch) -> Iterator[Clocked]:
    with HostileServer() as srv:
        srv.routes["/feed"] = switch
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
fetch: {{workers: 1, backoff_base: 1m, backoff_max: 10m, broken_after: 1h}}
defaults: {{interval: 5m, min_interval: 1m, extract: false, channels: [desk]}}
feeds:
  - {{url: "{srv.url("/feed")}", name: Loopback, allow_private: true}}
channels:
  desk: {{type: webhook, url: "http://127.0.0.1:9/desk", allow_private: true}}
  ops: {{type: webhook, url: "http://127.0.0.1:9/ops", allow_private: true, health: true}}
  pager: {{type: webhook, url: "http://127.0.0.1:9/pg", allow_private: true, health: true}}
""")
        rt = Runtime(load_checked(cfg), config_path=str(cfg))
        try:
            yield Clocked(rt)
        finally:
            asyncio.run(rt.aclose())


def test_failing_less_than_broken_after_reports_nothing(clocked: Clocked) -> None:
    for minutes in (0, 20, 40, 59):
        feed = clocked.poll_at(minutes)
    assert feed.consecutive_failures == 4 and feed.last_error_kind == "http_status"
    assert not feed.broken_reported
    assert clocked.events() == []


def test_broken_is_reported_once_to_every_health_channel(clocked: Clocked) -> None:
    for minutes in (0, 30, 61, 90, 120):
        feed = clocked.poll_at(minutes)
    assert feed.broken_reported
    assert clocked.events() == [("source.broken", "ops"), ("source.broken", "pager")]
    payload = clocked.rt.store.outbox.list_deliveries()[0].payload
    assert payload["url"] == feed.url
    assert "503" in payload["detail"]


def test_recovered_is_reported_once_after_a_broken_feed_works_again(
    clocked: Clocked, switch: Switch
) -> None:
    for minutes in (0, 61):
        clocked.poll_at(minutes)
    switch.down = False
    clocked.poll_at(70)
    feed = clocked.poll_at(80)
    assert feed.consecutive_failures == 0 and not feed.broken_reported
    assert clocked.events() == [
        ("source.broken", "ops"),
        ("source.broken", "pager"),
        ("source.recovered", "ops"),
        ("source.recovered", "pager"),
    ]


def test_a_feed_that_recovers_before_broken_after_reports_nothing(
    clocked: Clocked, switch: Switch
) -> None:
    clocked.poll_at(0)
    clocked.poll_at(30)
    switch.down = False
    feed = clocked.poll_at(40)
    assert feed.consecutive_failures == 0
    assert clocked.events() == []


def test_a_second_outage_is_reported_again(clocked: Clocked, switch: Switch) -> None:
    for minutes in (0, 61):
        clocked.poll_at(minutes)
    switch.down = False
    clocked.poll_at(70)
    switch.down = True
    for minutes in (80, 100, 141):
        clocked.poll_at(minutes)
    kinds = [kind for kind, channel in clocked.events() if channel == "ops"]
    assert kinds == ["source.broken", "source.broken", "source.recovered"]
