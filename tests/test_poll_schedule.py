"""End to end: the pipeline schedules each feed's next poll from what the feed and the server said.

The decisions themselves are unit-tested in test_polling.py (and the arithmetic in
test_schedule.py). These few run a real `Runtime` (store, fetcher, worker processes, pipeline)
against feeds on a loopback server, for what needs the whole path: a 304 keeps the stored ttl
and skip hints, `defaults.adaptive` counts the stored entries, a permanent redirect seen three
times moves the feed (a temporary one never), and Retry-After holds the feed or its host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from monitor.daemon import Runtime, load_checked
from monitor.store import FeedState, schema
from monitor.store.engine import write_tx
from tests.hostile_server import HostileServer, RequestHandler, fixed, redirect, send

pytestmark = pytest.mark.slow

HOUR = 3600.0


def rss(n_items: int, *, ttl: int | None = None, spacing: timedelta = timedelta(hours=1)) -> bytes:
    """An RSS 2.0 feed of `n_items` items published `spacing` apart, newest now."""
    now = datetime.now(UTC)
    items = "".join(
        f"<item><title>Item {i}</title><guid>item-{i}</guid><link>http://127.0.0.1/{i}</link>"
        f"<pubDate>{format_datetime(now - i * spacing)}</pubDate></item>"
        for i in range(n_items)
    )
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl is not None else ""
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<link>http://127.0.0.1/</link><description>d</description>{ttl_tag}{items}"
        "</channel></rss>"
    ).encode()


def conditional(body: bytes, **headers: str) -> Callable[[RequestHandler], None]:
    """200 with an ETag, then 304 for a request that sends it back."""
    extra = {k.replace("_", "-"): v for k, v in headers.items()}

    def handle(h: RequestHandler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            send(h, 304, b"", {"ETag": '"v1"', **extra})
        else:
            send(h, 200, body, {"ETag": '"v1"', "Content-Type": "application/rss+xml", **extra})

    return handle


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def runtime(tmp: Path, srv: HostileServer, paths: list[str], defaults: str = "") -> Runtime:
    feeds = "\n".join(
        f'  - {{url: "{srv.url(p)}", name: "{p.strip("/")}", allow_private: true}}' for p in paths
    )
    cfg = tmp / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp}/monitor.db
fetch: {{workers: 1, deadline: 5s}}
defaults: {{interval: 1m, min_interval: 10s, max_interval: 6h, extract: false{defaults}}}
feeds:
{feeds}
""")
    return Runtime(load_checked(cfg), config_path=str(cfg))


def poll_all(rt: Runtime) -> dict[str, FeedState]:
    """Make every feed due, poll them, return their states by path."""

    async def go() -> None:
        rt.store.feeds.poll_now(time.time())
        outcomes = await rt.poll_due()
        assert all(o.status != "failed" for o in outcomes), outcomes

    asyncio.run(go())
    return {f.url.split("/", 3)[-1]: f for f in rt.store.feeds.all()}


def delay(feed: FeedState) -> float:
    assert feed.last_success_at is not None
    return feed.next_poll_at - feed.last_success_at


def close(rt: Runtime) -> None:
    asyncio.run(rt.aclose())


def test_a_304_keeps_the_feeds_ttl(tmp_path: Path, server: HostileServer) -> None:
    server.routes["/ttl"] = conditional(rss(3, ttl=120), Cache_Control="max-age=30")
    rt = runtime(tmp_path, server, ["/ttl"])
    try:
        first = poll_all(rt)["ttl"]
        second = poll_all(rt)["ttl"]
    finally:
        close(rt)
    assert first.etag == '"v1"' and second.polls == 2
    assert [r.headers.get("if-none-match") for r in server.requests] == [None, '"v1"']
    assert delay(second) == pytest.approx(2 * HOUR, rel=0.11)


def test_skip_hours_still_hold_when_the_feed_answers_304(
    tmp_path: Path, server: HostileServer
) -> None:
    hour = datetime.now(UTC).hour
    skipped = [(hour + i) % 24 for i in range(3)]
    hours = "".join(f"<hour>{h}</hour>" for h in skipped)
    body = rss(3).replace(b"</channel>", f"<skipHours>{hours}</skipHours></channel>".encode())
    server.routes["/night"] = conditional(body)
    rt = runtime(tmp_path, server, ["/night"])
    try:
        poll_all(rt)
        feed = poll_all(rt)["night"]  # answered 304: no body, the stored hints apply
    finally:
        close(rt)
    second = {k.lower(): v for k, v in server.requests[-1].headers.items()}
    assert len(server.requests) == 2 and second.get("if-none-match") == '"v1"'
    when = datetime.fromtimestamp(feed.next_poll_at, UTC)
    assert when.hour == (hour + 3) % 24 and when.minute == 0 and when.second == 0


def test_adaptive_polls_busier_feeds_more_often(tmp_path: Path, server: HostileServer) -> None:
    # 60 items in the last 10 hours (one a week would be 168 h apart), and 2 in a week.
    server.routes["/busy"] = fixed(
        200, rss(60, spacing=timedelta(minutes=10)), Content_Type="application/rss+xml"
    )
    server.routes["/quiet"] = fixed(
        200, rss(2, spacing=timedelta(days=3)), Content_Type="application/rss+xml"
    )
    rt = runtime(tmp_path, server, ["/busy", "/quiet"], defaults=", adaptive: true")
    try:
        feeds = poll_all(rt)
    finally:
        close(rt)
    # One poll per expected entry: a week / 60 entries = 2.8 h; 2 entries: past max (6 h).
    assert delay(feeds["busy"]) == pytest.approx(7 * 24 * HOUR / 60, rel=0.11)
    assert delay(feeds["quiet"]) == pytest.approx(6 * HOUR, rel=0.11)


def test_permanent_redirect_seen_three_times_moves_the_feed(
    tmp_path: Path, server: HostileServer
) -> None:
    server.routes["/old"] = redirect(301, "/new")
    server.routes["/new"] = fixed(200, rss(2), Content_Type="application/rss+xml")
    rt = runtime(tmp_path, server, ["/old"])
    try:
        seen = [poll_all(rt)["old"].fetch_url for _ in range(4)]
        paths = [r.path for r in server.requests]
    finally:
        close(rt)
    old, new = server.url("/old"), server.url("/new")
    assert seen == [old, old, new, new]
    assert paths == ["/old", "/new", "/old", "/new", "/old", "/new", "/new"]


def test_temporary_redirect_never_moves_the_feed(tmp_path: Path, server: HostileServer) -> None:
    server.routes["/old"] = redirect(302, "/new")
    server.routes["/new"] = fixed(200, rss(2), Content_Type="application/rss+xml")
    rt = runtime(tmp_path, server, ["/old"])
    try:
        seen = [poll_all(rt)["old"].fetch_url for _ in range(4)]
    finally:
        close(rt)
    assert seen == [server.url("/old")] * 4


@pytest.mark.parametrize("scope", ["feed", "host"])
def test_retry_after_holds_the_feed_or_with_host_scope_the_whole_site(
    tmp_path: Path, server: HostileServer, scope: str
) -> None:
    server.routes["/limited"] = conditional(rss(2))
    server.routes["/other"] = conditional(rss(2))
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
fetch: {{workers: 1, deadline: 5s, retry_after_scope: {scope}}}
defaults: {{interval: 1m, min_interval: 10s, extract: false}}
feeds:
  - {{url: "{server.url("/limited")}", allow_private: true}}
  - {{url: "{server.url("/other")}", allow_private: true}}
""")
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    try:
        poll_all(rt)
        server.routes["/limited"] = fixed(429, b"slow down", Retry_After="600")
        limited = rt.store.feeds.get(server.url("/limited"))
        assert limited is not None
        with write_tx(rt.store.engine) as conn:  # only /limited is due
            conn.execute(
                update(schema.feeds).where(schema.feeds.c.id == limited.id).values(next_poll_at=0)
            )
        before = time.time()
        [outcome] = asyncio.run(rt.poll_due())
        assert outcome.status == "failed" and outcome.kinds == ["http_status"]
        states = {f.url.rsplit("/", 1)[-1]: f for f in rt.store.feeds.all()}
        assert states["limited"].next_poll_at >= before + 600
        if scope == "host":
            assert states["other"].next_poll_at >= before + 600
        else:
            assert states["other"].next_poll_at < before + 120
    finally:
        close(rt)
