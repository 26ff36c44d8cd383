"""Group commit (`GroupWriter`) on SQLite and a real PostgreSQL: pieces queued together share
one transaction, each keeps its own atomicity, and callers get their own results or errors."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, func, select

from monitor.models import Article
from monitor.store import FeedSpec, Store
from monitor.store import schema as s
from monitor.store.writer import GroupWriter
from monitor.stories import StoryIndex

NOW = 1_800_000_000.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = Store(store_url)
    st.feeds.sync(
        [
            FeedSpec(url=f"http://news.example/{i}", name=f"feed {i}", allow_private=False)
            for i in range(3)
        ],
        NOW,
    )
    # One writer thread, as on SQLite: these tests hold it with a blocker to see grouping.
    st.writer.close()
    st.writer = GroupWriter(st.engine, health=st.health)
    yield st
    st.close()


def _articles(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(s.articles)).scalar_one())


def _commit(store: Store, feed_id: int, guids: list[str], conn: Connection) -> list[int | None]:
    index = StoryIndex(window=72 * 3600)
    items = []
    for g in guids:
        article = Article(feed="f", guid=g, url=f"https://news.example/{g}", title=f"Story {g}")
        items.append((article, index.fingerprint(article), [], None))
    results = store.articles.commit(items, feed_id=feed_id, stories=index, now=NOW, conn=conn)
    return [r.article_id for r in results]


async def test_work_queued_during_a_commit_shares_the_next_transaction(store: Store) -> None:
    feed_ids = [f.id for f in store.feeds.all()]
    gate = threading.Event()

    def blocker(conn: Connection) -> str:
        gate.wait(10)  # holds the writer's first transaction open while the others queue
        return "first"

    first = asyncio.ensure_future(store.writer.run(blocker))
    await asyncio.sleep(0.05)
    rest = [
        asyncio.ensure_future(
            store.writer.run(functools.partial(_commit, store, feed_ids[i % 3], [f"a{i}", f"b{i}"]))
        )
        for i in range(9)
    ]
    await asyncio.sleep(0.05)
    gate.set()
    assert await first == "first"
    results = await asyncio.gather(*rest)
    assert all(len(r) == 2 and all(isinstance(i, int) for i in r) for r in results)
    assert _articles(store) == 18
    assert store.writer.groups == 2  # the blocker alone, then the nine together
    assert store.writer.pieces == 10


async def test_a_failing_piece_is_rolled_back_alone_and_only_its_caller_sees_the_error(
    store: Store,
) -> None:
    feed_id = store.feeds.all()[0].id
    gate = threading.Event()

    def broken(conn: Connection) -> None:
        _commit(store, feed_id, ["x1"], conn)  # stored, then undone with its savepoint
        raise ValueError("a bug in one poll")

    hold = asyncio.ensure_future(store.writer.run(lambda conn: gate.wait(10)))
    await asyncio.sleep(0.05)
    good = asyncio.ensure_future(
        store.writer.run(functools.partial(_commit, store, feed_id, ["g1"]))
    )
    bad = asyncio.ensure_future(store.writer.run(broken))
    after = asyncio.ensure_future(
        store.writer.run(functools.partial(_commit, store, feed_id, ["g2"]))
    )
    await asyncio.sleep(0.05)
    gate.set()
    await hold
    assert (await good)[0] is not None
    with pytest.raises(ValueError, match="a bug in one poll"):
        await bad
    assert (await after)[0] is not None
    with store.engine.connect() as conn:
        guids = set(conn.execute(select(s.articles.c.guid)).scalars())
    assert guids == {"g1", "g2"}


async def test_a_cancelled_caller_does_not_stop_the_others(store: Store) -> None:
    feed_id = store.feeds.all()[0].id
    gate = threading.Event()
    hold = asyncio.ensure_future(store.writer.run(lambda conn: gate.wait(10)))
    await asyncio.sleep(0.05)
    cancelled = asyncio.ensure_future(
        store.writer.run(functools.partial(_commit, store, feed_id, ["c1"]))
    )
    kept = asyncio.ensure_future(
        store.writer.run(functools.partial(_commit, store, feed_id, ["k1"]))
    )
    await asyncio.sleep(0.05)
    cancelled.cancel()
    gate.set()
    await hold
    assert (await kept)[0] is not None
    assert cancelled.cancelled()
    # Work already queued still runs (as a thread's would): the entry is stored, not lost.
    assert _articles(store) == 2


async def test_on_postgresql_a_blocked_group_does_not_hold_up_the_next(store_url: str) -> None:
    """Several writer threads on PostgreSQL: while one group's transaction is held open,
    another group commits (on SQLite, whose writers are serial, there is one thread)."""
    st = Store(store_url)
    try:
        if st.engine.dialect.name == "sqlite":
            assert st.writer.writers == 1
            return
        assert st.writer.writers == 3
        st.feeds.sync([FeedSpec(url="http://news.example/w", name="w", allow_private=False)], NOW)
        feed_id = st.feeds.all()[0].id
        gate = threading.Event()
        hold = asyncio.ensure_future(st.writer.run(lambda conn: gate.wait(20)))
        await asyncio.sleep(0.05)
        done = await asyncio.wait_for(
            st.writer.run(functools.partial(_commit, st, feed_id, ["p1", "p2"])), timeout=10
        )
        assert all(isinstance(i, int) for i in done)
        assert _articles(st) == 2 and not hold.done()  # committed while the other is open
        gate.set()
        await hold
    finally:
        st.close()
