"""Retention (monitor/store/retention.py): a store with old rows of every kind is pruned, and
exactly what nothing needs any more is gone, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from monitor.store import Store
from monitor.store import schema as s
from monitor.store.engine import read_tx, write_tx
from monitor.store.retention import (
    RetentionPolicy,
    ensure_incremental_vacuum,
    prune,
    store_size,
)

DAY = 86400.0
NOW = 2_000_000_000.0
WINDOW = 3 * DAY
POLICY = RetentionPolicy(articles=30 * DAY, alerts=365 * DAY, window=WINDOW, batch=2)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store(store_url)
    try:
        yield st
    finally:
        st.close()


class Rows:
    """Inserts rows with explicit ages (days before NOW) and remembers their ids by name."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ids: dict[str, int] = {}
        self.feed = self._add(
            "feed",
            s.feeds,
            url="http://127.0.0.1/f",
            fetch_url="http://127.0.0.1/f",
            name="f",
            created_at=NOW - 500 * DAY,
        )

    def _add(self, label: str, table: Any, /, **values: Any) -> int:
        key = self.conn.execute(insert(table).values(**values)).inserted_primary_key
        assert key is not None
        self.ids[label] = int(key[0])
        return self.ids[label]

    def story(self, name: str, updated: float) -> int:
        t = NOW - updated * DAY
        return self._add(name, s.stories, title=name, url=None, created_at=t, updated_at=t)

    def article(self, name: str, story: str, fetched: float) -> int:
        t = NOW - fetched * DAY
        aid = self._add(
            name,
            s.articles,
            feed_id=self.feed,
            guid=name,
            url=f"http://127.0.0.1/{name}",
            title=name,
            body="x" * 2000,
            fetched_at=t,
            story_id=self.ids[story],
            minhash=b"\0" * 64,
        )
        self._add(
            f"{name}.match", s.matches, article_id=aid, rule="r1", explanation="[]", created_at=t
        )
        self._add(
            f"{name}.band",
            s.story_bands,
            band=aid,
            article_id=aid,
            story_id=self.ids[story],
            seen_at=t,
        )
        return aid

    def alert(self, name: str, article: str, story: str, created: float, rule: str = "r1") -> int:
        return self._add(
            name,
            s.alerts,
            key=name,
            rule=rule,
            story_id=self.ids[story],
            article_id=self.ids[article],
            severity="high",
            status="sent",
            message="{}",
            created_at=NOW - created * DAY,
        )

    def delivery(self, name: str, alert: str | None, status: str, created: float) -> int:
        t = NOW - created * DAY
        return self._add(
            name,
            s.deliveries,
            alert_id=self.ids[alert] if alert else None,
            channel="hook",
            kind="alert" if alert else "source.broken",
            idempotency_key=name,
            status=status,
            next_attempt_at=t,
            payload="{}",
            created_at=t,
        )

    def key(self, name: str, story: str, seen: float) -> None:
        self.conn.execute(
            insert(s.story_keys).values(
                key=name, story_id=self.ids[story], seen_at=NOW - seen * DAY
            )
        )


def _fill(store: Store) -> dict[str, int]:
    with write_tx(store.engine) as conn:
        r = Rows(conn)
        # A closed old story: an article nobody needs, and one whose old alert was sent.
        r.story("s_old", 400)
        r.article("a_plain", "s_old", 400)
        r.article("a_alerted", "s_old", 400)
        r.alert("al_old", "a_alerted", "s_old", 400)
        r.delivery("d_old_sent", "al_old", "sent", 400)
        r.delivery("d_old_dead", "al_old", "dead", 400)
        r.key("k_old", "s_old", 400)
        # Past the article age, not the alert age: the alert keeps its article.
        r.story("s_mid", 40)
        r.article("a_mid_alerted", "s_mid", 40)
        r.article("a_mid_plain", "s_mid", 40)
        r.alert("al_mid", "a_mid_alerted", "s_mid", 40)
        r.delivery("d_mid_sent", "al_mid", "sent", 40)
        # An old alert whose delivery still waits (a failing receiver): kept, article too.
        r.story("s_pending", 400)
        r.article("a_pending", "s_pending", 400)
        r.alert("al_pending", "a_pending", "s_pending", 400)
        r.delivery("d_pending", "al_pending", "failed", 400)
        # An old alert with an analyst's verdict: labelled data, kept.
        r.story("s_feedback", 400)
        r.article("a_feedback", "s_feedback", 400)
        r.alert("al_feedback", "a_feedback", "s_feedback", 400)
        r._add("fb", s.feedback, alert_id=r.ids["al_feedback"], verdict="relevant", created_at=NOW)
        # The only (so newest) alert of rule r2: its cooldown reads it.
        r.story("s_r2", 400)
        r.article("a_r2", "s_r2", 400)
        r.alert("al_r2", "a_r2", "s_r2", 400, rule="r2")
        # A story still open (an article joined an hour ago): its old articles are counted.
        r.story("s_open", 1 / 24)
        r.article("a_open_old", "s_open", 40)
        r.article("a_open_new", "s_open", 1 / 24)
        r.key("k_open", "s_open", 1 / 24)
        # Newest alert of r1, so that al_old and al_mid are not.
        r.alert("al_r1_newest", "a_open_new", "s_open", 1 / 24)
        # Recent: kept.
        r.story("s_new", 1)
        r.article("a_new", "s_new", 1)
        # Health notices without an alert.
        r.delivery("n_old_sent", None, "sent", 400)
        r.delivery("n_old_pending", None, "pending", 400)
        r.delivery("n_recent_sent", None, "sent", 10)
        return r.ids


def _ids(conn: Connection, table: Any) -> set[int]:
    return set(conn.execute(select(table.c.id)).scalars())


def _names(ids: dict[str, int], *names: str) -> set[int]:
    return {ids[n] for n in names}


def test_prune_removes_exactly_what_nothing_needs(store: Store) -> None:
    ids = _fill(store)
    pruned = asyncio.run(prune(store, POLICY, now=NOW))
    with read_tx(store.engine) as conn:
        articles = _ids(conn, s.articles)
        alerts = _ids(conn, s.alerts)
        deliveries = _ids(conn, s.deliveries)
        stories = _ids(conn, s.stories)
        matches = _ids(conn, s.matches)
        bands = _ids(conn, s.story_bands)
        keys = set(conn.execute(select(s.story_keys.c.key)).scalars())
        feedback = _ids(conn, s.feedback)
    kept_articles = (
        "a_mid_alerted", "a_pending", "a_feedback", "a_r2", "a_open_old", "a_open_new", "a_new"
    )  # fmt: skip
    assert articles == _names(ids, *kept_articles)
    assert alerts == _names(ids, "al_mid", "al_pending", "al_feedback", "al_r2", "al_r1_newest")
    assert deliveries == _names(ids, "d_mid_sent", "d_pending", "n_old_pending", "n_recent_sent")
    assert stories == _names(ids, "s_mid", "s_pending", "s_feedback", "s_r2", "s_open", "s_new")
    assert matches == _names(ids, *(f"{a}.match" for a in kept_articles))
    # Bands leave with the story window whatever the article's age: only those seen within it.
    assert bands == _names(ids, "a_open_new.band", "a_new.band")
    assert keys == {"k_open"}
    assert feedback == {ids["fb"]}
    assert (pruned.articles, pruned.alerts, pruned.deliveries, pruned.stories) == (3, 1, 3, 1)
    assert pruned.story_keys == 1
    assert pruned.matches == 3
    assert pruned.story_bands == 10 - 2  # 10 articles' bands, 2 within the window
    # A second prune finds nothing more.
    again = asyncio.run(prune(store, POLICY, now=NOW))
    assert again.rows == 0


def test_nothing_is_pruned_when_kept_forever(store: Store) -> None:
    ids = _fill(store)
    forever = RetentionPolicy(articles=None, alerts=None, window=WINDOW, batch=2)
    pruned = asyncio.run(prune(store, forever, now=NOW))
    with read_tx(store.engine) as conn:
        assert len(_ids(conn, s.articles)) == 10
        assert len(_ids(conn, s.alerts)) == 6
        assert len(_ids(conn, s.stories)) == 7
    # Story fingerprints still leave with the window: story assignment never reads them.
    assert pruned.story_keys == 1
    assert pruned.articles == pruned.alerts == pruned.stories == 0
    assert ids


def test_retention_never_goes_inside_the_story_window(store: Store) -> None:
    _fill(store)
    short = RetentionPolicy(articles=60.0, alerts=60.0, window=WINDOW, batch=500)
    asyncio.run(prune(store, short, now=NOW))
    with read_tx(store.engine) as conn:
        fetched = list(conn.execute(select(s.articles.c.fetched_at)).scalars())
    # a_new (one day old) stays: the cutoff is the story window, not the 60 s asked for.
    assert NOW - DAY in fetched


def test_sqlite_space_is_given_back(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/m.db")
    try:
        with read_tx(store.engine) as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == 2  # incremental
        with write_tx(store.engine) as conn:
            r = Rows(conn)
            r.story("s", 400)
            for i in range(400):
                r.article(f"a{i}", "s", 400)
        before = store_size(store.engine)
        assert before.oldest_article == NOW - 400 * DAY
        pruned = asyncio.run(
            prune(store, RetentionPolicy(30 * DAY, 365 * DAY, WINDOW, batch=500), now=NOW)
        )
        after = store_size(store.engine)
        assert pruned.articles == 400
        assert pruned.vacuumed_pages > 100
        assert after.bytes < before.bytes - 400 * 2000
        assert after.free_bytes == 0
        assert after.oldest_article is None
    finally:
        store.close()


def test_an_existing_database_is_converted_when_small(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:  # as an older version created it: no auto_vacuum
        raw.execute("CREATE TABLE t (x)")
    store = Store(f"sqlite:///{path}")
    try:
        with read_tx(store.engine) as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == 0
        said = ensure_incremental_vacuum(store.engine)
        assert "VACUUM done" in said
        with read_tx(store.engine) as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar_one() == 2
        assert ensure_incremental_vacuum(store.engine) == ""
        # Too big to convert while running: the user is told what to run instead.
        store.engine.dispose()
        with sqlite3.connect(path) as raw:
            raw.execute("PRAGMA auto_vacuum=NONE")
            raw.execute("VACUUM")
        said = ensure_incremental_vacuum(store.engine, limit=1)
        assert "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;" in said
    finally:
        store.close()


def test_status_shows_database_size_and_oldest_article(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "m.db"
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"database: sqlite:///{db}\nretention: {{articles: 14d}}\n")
    store = Store(f"sqlite:///{db}")
    try:
        with write_tx(store.engine) as conn:
            r = Rows(conn)
            r.story("s", 1)
            r.article("a", "s", (NOW - time.time()) / DAY + 2)  # fetched two days ago
    finally:
        store.close()
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "status", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("Database:"))
    assert " MB" in line
    assert "oldest article fetched 2d ago" in line
    assert "articles kept 14d" in line


def test_store_size_on_both_engines(store: Store) -> None:
    empty = store_size(store.engine)
    assert empty.bytes > 0
    assert empty.oldest_article is None
    _fill(store)
    assert store_size(store.engine).oldest_article == NOW - 400 * DAY


def test_monitor_once_prunes(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "m.db"
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"database: sqlite:///{db}\nlog_level: INFO\n")
    store = Store(f"sqlite:///{db}")
    try:
        with write_tx(store.engine) as conn:
            r = Rows(conn)
            r.story("s_old", (NOW - time.time()) / DAY + 40)  # closed 40 days ago
            r.article("old", "s_old", (NOW - time.time()) / DAY + 40)
            r.story("s_new", (NOW - time.time()) / DAY + 1)
            r.article("new", "s_new", (NOW - time.time()) / DAY + 1)
    finally:
        store.close()
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "once", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "retention: deleted 1 articles, 1 matches, 1 story bands, 1 stories" in done.stderr
    store = Store(f"sqlite:///{db}")
    try:
        with read_tx(store.engine) as conn:
            assert list(conn.execute(select(s.articles.c.guid)).scalars()) == ["new"]
    finally:
        store.close()
