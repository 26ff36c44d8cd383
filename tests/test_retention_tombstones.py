"""Tombstones (monitor/store/retention.py, `ArticleRepo._seen`): an entry whose article
retention deleted is still known to its feed, so it is neither stored nor alerted again, until
its tombstone is older than `retention.tombstones`. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select

from monitor.alerting import Alert
from monitor.models import Article
from monitor.store import FeedSpec, NewArticle, Route, RuleHit, Store
from monitor.store import schema as s
from monitor.store.engine import read_tx, write_tx
from monitor.store.retention import RetentionPolicy, prune
from monitor.stories import StoryIndex

DAY = 86400.0
T0 = 1_900_000_000.0
WINDOW = 3 * DAY
POLICY = RetentionPolicy(articles=30 * DAY, alerts=365 * DAY, window=WINDOW, batch=2)


@pytest.fixture
def store(store_url: str) -> Iterator[tuple[Store, int]]:
    st = Store(store_url)
    st.feeds.sync([FeedSpec("http://news.example/feed", "News", False)], T0)
    feed = st.feeds.get("http://news.example/feed")
    assert feed is not None
    try:
        yield st, feed.id
    finally:
        st.close()


def _hit() -> RuleHit:
    alert = Alert.from_dict(
        {
            "kind": "alert",
            "idempotency_key": "",
            "alert_id": None,
            "rule": None,
            "severity": "high",
            "title": "t",
            "url": None,
            "source": "News",
            "published": None,
            "snippet": "t",
            "highlights": [],
            "story_id": None,
            "sources": [],
            "why": [],
            "created_at": datetime.fromtimestamp(T0, UTC).isoformat(),
        }
    )
    return RuleHit(Route(rule="r", severity="high", channels=[("hook", False)]), alert)


def _offer(st: Store, feed_id: int, guid: str, now: float, *, matched: bool) -> int | None:
    """The feed lists entry `guid` at `now`; the article id when it was stored as new."""
    art = Article(feed="News", guid=guid, url=f"http://news.example/{guid}", title=guid, body="")
    idx = StoryIndex(window=WINDOW)
    hits = [_hit()] if matched else []
    result = st.articles.commit(
        [NewArticle(art, idx.fingerprint(art), hits)], feed_id=feed_id, stories=idx, now=now
    )[0]
    return result.article_id


def _count(st: Store, table: object) -> int:
    with read_tx(st.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_a_pruned_entry_offered_again_is_neither_stored_nor_alerted(
    store: tuple[Store, int],
) -> None:
    st, fid = store
    assert _offer(st, fid, "old", T0, matched=False) is not None
    later = T0 + 40 * DAY
    pruned = asyncio.run(prune(st, POLICY, now=later))
    assert pruned.articles == 1
    assert _count(st, s.articles) == 0
    assert _count(st, s.entry_tombstones) == 1

    # The feed still lists the entry, and a rule now matches it: it is known, nothing happens.
    assert st.articles.seen_guids(fid, ["old", "fresh"]) == {"old"}
    assert _offer(st, fid, "old", later + DAY, matched=True) is None
    assert _count(st, s.articles) == 0
    assert _count(st, s.alerts) == 0
    assert _count(st, s.deliveries) == 0
    # A new entry of the same feed is stored and alerted as before.
    assert _offer(st, fid, "fresh", later + DAY, matched=True) is not None
    assert _count(st, s.alerts) == 1


def test_the_tombstone_is_the_feeds_own(store: tuple[Store, int]) -> None:
    st, fid = store
    st.feeds.sync(
        [
            FeedSpec("http://news.example/feed", "News", False),
            FeedSpec("http://other.example/feed", "Other", False),
        ],
        T0,
    )
    other = st.feeds.get("http://other.example/feed")
    assert other is not None
    _offer(st, fid, "shared-guid", T0, matched=False)
    asyncio.run(prune(st, POLICY, now=T0 + 40 * DAY))
    assert st.articles.seen_guids(fid, ["shared-guid"]) == {"shared-guid"}
    assert st.articles.seen_guids(other.id, ["shared-guid"]) == set()


def test_old_tombstones_are_pruned_by_their_own_setting(store: tuple[Store, int]) -> None:
    st, fid = store
    now = T0 + 1000 * DAY
    with write_tx(st.engine) as conn:
        conn.execute(
            insert(s.entry_tombstones),
            [
                {"feed_id": fid, "guid_hash": s.guid_key(g), "pruned_at": now - age * DAY}
                for g, age in (("ancient", 400), ("ancient2", 366), ("recent", 10))
            ],
        )
    assert st.articles.seen_guids(fid, ["ancient", "ancient2", "recent"]) == {
        "ancient",
        "ancient2",
        "recent",
    }
    forever = RetentionPolicy(30 * DAY, 365 * DAY, WINDOW, batch=1, tombstones=None)
    assert asyncio.run(prune(st, forever, now=now)).tombstones == 0
    assert _count(st, s.entry_tombstones) == 3

    pruned = asyncio.run(prune(st, POLICY, now=now))  # tombstones: 365 days (the default)
    assert pruned.tombstones == 2  # in batches of 2: one full batch, then an empty one
    assert st.articles.seen_guids(fid, ["ancient", "ancient2", "recent"]) == {"recent"}
    assert _offer(st, fid, "ancient", now, matched=False) is not None


def test_the_tombstone_hash_is_stable_and_signed() -> None:
    # Stored keys must mean the same entry in every process and version (no salt, no change
    # of function): this value is what BLAKE2b-64 gives, and what databases already hold.
    assert s.guid_key("http://news.example/a") == -8429167994470435206
    keys = {s.guid_key(f"guid-{i}") for i in range(10_000)}
    assert len(keys) == 10_000
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert any(k < 0 for k in keys)
