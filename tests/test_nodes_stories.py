"""Story identity across nodes without a cluster-wide lock (issue 19).

Six stores (six nodes' connection pools and group writers) on one real PostgreSQL commit the
same wire story from six feeds at the same moment. The story-key lookup is slowed down so that,
without the per-key advisory locks the group writer takes, every node would find no story and
open its own: the test fails then (six stories, six alerts). With them, one story, one alert,
and the other five articles join it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, text

from monitor.alerting import Alert
from monitor.models import Article
from monitor.store import FeedSpec, Route, RuleHit, Store
from monitor.store import schema as s
from monitor.store.stories import StoryRepo, story_locks
from monitor.stories import StoryIndex

NOW = 1_800_000_000.0
NODES = 6
TITLE = "Earthquake of magnitude 7.1 strikes off the coast of Chile"
ROUTE = Route(rule="quake", severity="high", channels=[("hook", False)])


@pytest.fixture
def stores(pg_url: str) -> Iterator[list[Store]]:
    first = Store(pg_url)
    first.feeds.sync(
        [FeedSpec(f"http://outlet{i}.example/feed", f"Outlet {i}", False) for i in range(NODES)],
        NOW,
    )
    made = [first] + [Store(pg_url) for _ in range(NODES - 1)]
    yield made
    for st in made:
        st.close()


def _slow_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key lookup takes 0.3 s: six unguarded decisions would all see no story."""
    known = StoryRepo._known_keys

    def slow(self: StoryRepo, conn: Connection, keys: Any, cutoff: float) -> dict[str, int]:
        found = known(self, conn, keys, cutoff)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(StoryRepo, "_known_keys", slow)


def _commit_all(stores: list[Store]) -> list[Any]:
    idx = StoryIndex(window=72 * 3600)
    alert = Alert.from_dict({"rule": "quake", "title": TITLE, "created_at": "2026-11-25T10:30:00Z"})
    start = threading.Barrier(NODES)
    results: list[Any] = [None] * NODES

    def node(i: int) -> None:
        st = stores[i]
        feed = st.feeds.get(f"http://outlet{i}.example/feed")
        assert feed is not None
        art = Article(
            feed=f"Outlet {i}",
            guid=f"wire-{i}",
            url=f"https://outlet{i}.example/world/chile-quake-{i}",
            title=TITLE,
        )
        item = (art, idx.fingerprint(art), [RuleHit(ROUTE, alert)], None)

        def piece(conn: Connection) -> Any:
            return st.articles.commit([item], feed_id=feed.id, stories=idx, now=NOW, conn=conn)

        start.wait()
        # The daemon's path: the node's group writer, with the piece's story locks.
        results[i] = asyncio.run(st.writer.run(piece, locks=story_locks([item[1]])))

    threads = [threading.Thread(target=node, args=(i,)) for i in range(NODES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_one_wire_story_from_six_nodes_at_once_is_one_story_and_one_alert(
    stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_lookups(monkeypatch)
    results = _commit_all(stores)
    assert all(r is not None for r in results)
    with stores[0].engine.connect() as conn:
        story_ids = conn.execute(select(s.articles.c.story_id)).scalars().all()
        alerts = conn.execute(select(s.alerts.c.story_id, s.alerts.c.status)).all()
        deliveries = conn.execute(select(func.count()).select_from(s.deliveries)).scalar_one()
    assert len(story_ids) == NODES and len(set(story_ids)) == 1
    assert [tuple(a) for a in alerts] == [(story_ids[0], "sent")]
    assert deliveries == 1
    reasons = sorted(r[0].story_reason for r in results)
    assert reasons == ["new"] + ["title"] * (NODES - 1)


def test_a_node_deciding_another_story_does_not_wait_for_an_open_commit(
    stores: list[Store],
) -> None:
    """Node A's group holds its story locks, its transaction open; node B commits an
    unrelated story meanwhile (a cluster-wide lock made B wait for A's commit)."""
    idx = StoryIndex(window=72 * 3600)
    holding, release = threading.Event(), threading.Event()

    def item(i: int) -> Any:
        art = Article(
            feed=f"Outlet {i}",
            guid=f"own-{i}",
            url=f"https://outlet{i}.example/local/news-{i}",
            title=f"Local council number {i} approves its budget for next year",
        )
        return (art, idx.fingerprint(art), [], None)

    def node(i: int, hold: bool) -> None:
        st = stores[i]
        feed = st.feeds.get(f"http://outlet{i}.example/feed")
        assert feed is not None
        it = item(i)

        def piece(conn: Connection) -> Any:
            out = st.articles.commit([it], feed_id=feed.id, stories=idx, now=NOW, conn=conn)
            if hold:
                holding.set()
                release.wait(timeout=60)
            return out

        asyncio.run(st.writer.run(piece, locks=story_locks([it[1]])))

    a = threading.Thread(target=node, args=(0, True))
    a.start()
    assert holding.wait(timeout=30)
    b = threading.Thread(target=node, args=(1, False))
    b.start()
    b.join(timeout=30)
    done = not b.is_alive()
    release.set()
    a.join(timeout=30)
    assert done, "node B waited for node A's open transaction"
    with stores[0].engine.connect() as conn:
        stories = conn.execute(select(func.count()).select_from(s.stories)).scalar_one()
    assert stories == 2


def test_a_piece_that_loses_a_race_on_a_unique_key_runs_again_and_sees_the_winner(
    stores: list[Store],
) -> None:
    """Two nodes store the same feed's entry (a lost lease): no story key, so no lock in
    common. Node B's INSERT waits for node A's open transaction, then meets the unique key:
    its piece is rolled back and run again in its writer's next group, where the entry is
    seen (stored once, no error)."""
    idx = StoryIndex(window=72 * 3600)
    art = Article(feed="Outlet 0", guid="same-entry", url="", title="x")
    item = (art, idx.fingerprint(art), [], None)
    assert story_locks([item[1]]) == []
    feed = stores[0].feeds.get("http://outlet0.example/feed")
    assert feed is not None
    holding, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def node(name: str, st: Store, hold: bool) -> None:
        def piece(conn: Connection) -> Any:
            out = st.articles.commit([item], feed_id=feed.id, stories=idx, now=NOW, conn=conn)
            if hold:
                holding.set()
                release.wait(timeout=60)
            return out

        results[name] = asyncio.run(st.writer.run(piece))

    a = threading.Thread(target=node, args=("a", stores[0], True))
    a.start()
    assert holding.wait(timeout=30)
    b = threading.Thread(target=node, args=("b", stores[1], False))
    b.start()
    # Once B waits on A's row (PostgreSQL says so), A commits and B's INSERT fails.
    _until_a_session_waits_for_a_lock(stores[0])
    release.set()
    a.join(timeout=30)
    b.join(timeout=30)
    assert results["a"][0].article_id is not None
    assert results["b"][0].article_id is None  # seen, on the second run
    assert stores[1].writer.retried == 1
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.articles)).scalar_one() == 1


def _until_a_session_waits_for_a_lock(st: Store) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with st.engine.connect() as conn:
            if conn.execute(waiting).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError("node B never waited for node A's row")
