"""A poll that stores entries records itself in the SAME transaction as its entries.

Real `Runtime` against a loopback feed (extraction off): the entries and the feed's record
(validators, next poll, lease release) commit together or not at all.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select, update

from monitor.daemon import Runtime, load_checked
from monitor.store import schema
from monitor.store.engine import read_tx, write_tx
from tests.hostile_server import HostileServer, fixed
from tests.test_poll_schedule import close, conditional, rss, runtime, server  # noqa: F401

pytestmark = pytest.mark.slow


def _articles(rt: Any) -> int:
    with read_tx(rt.store.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(schema.articles)).scalar_one())


def test_entries_and_the_poll_record_commit_together(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.routes["/f"] = conditional(rss(3))
    rt = runtime(tmp_path, server, ["/f"])
    try:
        # Recording the poll fails inside the commit: its entries must roll back with it.
        apply = rt.store.feeds.apply

        def boom(conn: Connection, feed: Any, owner: str, change: Any, stored: int) -> bool:
            if change.ok:
                raise RuntimeError("disk full")
            return apply(conn, feed, owner, change, stored)  # the failure is recorded

        monkeypatch.setattr(rt.store.feeds, "apply", boom)
        rt.store.feeds.poll_now(time.time())
        [outcome] = asyncio.run(rt.poll_due())
        assert outcome.status == "failed"
        assert _articles(rt) == 0
        [feed] = rt.store.feeds.all()
        assert feed.etag is None and feed.polls == 0

        monkeypatch.undo()
        # Statements by transaction (SQLite connections of the pool; BEGIN opens a new one).
        txs: list[list[str]] = []

        # SQLite's trace callback sees every statement, also those run on the raw cursor.
        def on_statement(statement: str) -> None:
            if txs:
                txs[-1].append(" ".join(statement.split()[:4]))

        def on_begin(conn: Connection) -> None:
            txs.append([])
            conn.connection.driver_connection.set_trace_callback(on_statement)  # type: ignore[union-attr]

        # The failure set a backoff; make the feed due again as if it had passed.
        with write_tx(rt.store.engine) as conn:
            conn.execute(update(schema.feeds).values(next_poll_at=0))
        event.listen(rt.store.engine, "begin", on_begin)
        [outcome] = asyncio.run(rt.poll_due())
        assert (outcome.status, outcome.new) == ("new", 3)
        assert _articles(rt) == 3
        [feed] = rt.store.feeds.all()
        assert (feed.etag, feed.polls, feed.entries_total) == ('"v1"', 1, 3)
        # ONE transaction holds the entries and the poll's record (they used to take one each).
        stored = [t for t in txs if any(q.startswith("INSERT INTO articles") for q in t)]
        recorded = [t for t in txs if any(q.startswith("UPDATE feeds SET etag") for q in t)]
        assert len(stored) == 1 and recorded == stored
    finally:
        close(rt)


def test_a_first_poll_after_a_crash_stores_each_entry_once_and_counts_only_new_ones(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
) -> None:
    """A feed that has stored nothing (`entries_total == 0`) skips the seen-list read before
    its commit. Entries stored by an earlier poll that died before it was recorded must still
    be stored once, and only the really new ones counted."""
    from monitor.feeds import parse_feed

    body = rss(3)
    server.routes["/f"] = conditional(body)
    rt = runtime(tmp_path, server, ["/f"])
    try:
        [feed] = rt.store.feeds.all()
        # Two of the three entries were committed by a poll that crashed before recording.
        index = rt.pipeline.stories
        earlier = [
            (article, index.fingerprint(article), [], None)
            for article in (
                e.article(feed.name) for e in parse_feed(body, url=feed.url).entries[:2]
            )
        ]
        rt.store.articles.commit(earlier, feed_id=feed.id, stories=index, now=time.time())
        assert _articles(rt) == 2 and feed.entries_total == 0

        rt.store.feeds.poll_now(time.time())
        [outcome] = asyncio.run(rt.poll_due())
        assert (outcome.status, outcome.entries, outcome.new) == ("new", 3, 1)
        assert _articles(rt) == 3
        [feed] = rt.store.feeds.all()
        assert (feed.polls, feed.entries_total) == (1, 1)
    finally:
        close(rt)


def test_pages_still_extracting_when_the_budget_is_spent_are_left_for_the_next_poll(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
) -> None:
    """A poll commits once, at its end. Pages that take longer than the extraction budget
    (0.6 of the feed's lease) are not waited for: what was extracted is committed, the feed's
    validators are not kept (the next poll must read the feed again) and the next poll stores
    the rest."""
    import threading

    from tests.hostile_server import send

    release = threading.Event()
    page = b"<html><body><article><p>" + b"Harbour fire spreads to the old town. " * 40
    page += b"</p></article></body></html>"

    def slow(h: Any) -> None:
        release.wait(7.5)  # longer than the budget (6 s of a 10 s lease) unless released
        send(h, 200, page, {"Content-Type": "text/html"})

    server.routes["/fast"] = fixed(200, page, Content_Type="text/html")
    server.routes["/slow"] = slow
    items = "".join(
        f"<item><title>{p}</title><guid>{p}</guid><link>{server.url('/' + p)}</link></item>"
        for p in ("fast", "slow")
    )
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        f"<link>{server.url('/')}</link><description>d</description>{items}</channel></rss>"
    ).encode()
    server.routes["/f"] = conditional(body)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
fetch: {{workers: 1, deadline: 20s}}
daemon: {{feed_lease: 10s}}
defaults: {{interval: 1m, min_interval: 10s, extract: true}}
feeds:
  - {{url: "{server.url("/f")}", allow_private: true}}
""")
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    try:
        rt.store.feeds.poll_now(time.time())
        [first] = asyncio.run(rt.poll_due())
        assert (first.status, first.entries, first.new) == ("new", 2, 1)
        [feed] = rt.store.feeds.all()
        assert feed.etag is None and feed.content_hash is None and _articles(rt) == 1
        release.set()
        rt.store.feeds.poll_now(time.time())
        [second] = asyncio.run(rt.poll_due())
        assert (second.status, second.new) == ("new", 1) and _articles(rt) == 2
        feed_requests = [r for r in server.requests if r.path == "/f"]
        assert [r.headers.get("if-none-match") for r in feed_requests] == [None, None]
    finally:
        close(rt)


def test_the_daemon_holds_a_bounded_number_of_article_pages(
    tmp_path: Path,
    server: HostileServer,  # noqa: F811
) -> None:
    """Twelve feeds of eight new items, one worker: pages arrive faster than it extracts
    them. The pages in hand (served and not yet extracted) stay within the bound, and every
    article is still stored with its body."""
    import threading

    from monitor.pipeline import PAGES_PER_WORKER
    from tests.hostile_server import send

    lock = threading.Lock()
    counts = {"served": 0, "done": 0, "peak": 0}
    para = "<p>" + "Harbour fire spreads to the old town as crews arrive. " * 60 + "</p>"
    page = f"<html><body><article>{para * 6}</article></body></html>".encode()

    def article(h: Any) -> None:
        with lock:
            counts["served"] += 1
            counts["peak"] = max(counts["peak"], counts["served"] - counts["done"])
        send(h, 200, page, {"Content-Type": "text/html"})

    feeds = []
    for f in range(12):
        items = "".join(
            f"<item><title>Fire {f}-{i}</title><guid>{f}-{i}</guid>"
            f"<link>{server.url(f'/a/{f}/{i}')}</link></item>"
            for i in range(8)
        )
        for i in range(8):
            server.routes[f"/a/{f}/{i}"] = article
        server.routes[f"/f{f}"] = fixed(
            200,
            (
                '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                f"<link>{server.url('/')}</link><description>d</description>{items}"
                "</channel></rss>"
            ).encode(),
            Content_Type="application/rss+xml",
        )
        feeds.append(f'  - {{url: "{server.url(f"/f{f}")}", allow_private: true}}')
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"database: sqlite:///{tmp_path}/monitor.db\nfetch: {{workers: 1, per_host: 8}}\n"
        "defaults: {interval: 1m, extract: true}\nfeeds:\n" + "\n".join(feeds) + "\n"
    )
    rt = Runtime(load_checked(cfg), config_path=str(cfg))
    extract = rt.workers.extract

    async def counted(html: bytes, *, url: str, timeout: float) -> Any:
        try:
            return await extract(html, url=url, timeout=timeout)
        finally:
            with lock:
                counts["done"] += 1

    rt.workers.extract = counted  # type: ignore[method-assign]
    try:
        rt.store.feeds.poll_now(time.time())
        polls = asyncio.run(rt.poll_due())
        assert sorted(p.new for p in polls) == [8] * 12
        with rt.store.engine.connect() as conn:
            bodies = conn.execute(
                select(func.count()).where(schema.articles.c.body.like("%Harbour fire%"))
            ).scalar_one()
    finally:
        close(rt)
    assert bodies == 96 and counts["served"] == 96
    # Without the bound, 46 pages were in hand at once here (16 with it).
    assert 2 <= counts["peak"] <= PAGES_PER_WORKER < 46
