"""The SQLite fast paths of the commit (statements on the DBAPI cursor) write the same rows
as SQLAlchemy's statements and read back what they wrote."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from monitor.models import Article
from monitor.store import FeedSpec, Store
from monitor.store import schema as s
from monitor.stories import StoryIndex

NOW = 1_800_000_000.0


def test_raw_inserts_and_chunked_lookups(tmp_path: Path) -> None:
    st = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        st.feeds.sync([FeedSpec("http://a.example/feed", "A", False)], NOW)
        feed = st.feeds.get("http://a.example/feed")
        assert feed is not None
        index = StoryIndex(window=3600.0)
        articles = [
            Article(
                feed="A",
                guid=f"g{i}",
                url=f"https://a.example/news/{i}",
                title=f"Harbour fire number {i} spreads to the old town",
                summary="s",
                authors=["Ann"] if i == 0 else [],
                tags=[],
            )
            for i in range(3)
        ]
        items = [(a, index.fingerprint(a), [], None) for a in articles]
        results = st.articles.commit(items, feed_id=feed.id, stories=index, now=NOW)
        assert [r.story_reason for r in results] == ["new", "new", "new"]
        with st.engine.connect() as conn:
            rows = conn.execute(
                select(s.articles.c.guid, s.articles.c.authors, s.articles.c.tags).order_by(
                    s.articles.c.id
                )
            ).all()
            keys = conn.execute(select(s.story_keys.c.key)).scalars().all()
            stories = conn.execute(select(s.stories.c.updated_at)).scalars().all()
        assert [(g, json.loads(a), json.loads(t)) for g, a, t in rows] == [
            ("g0", ["Ann"], []),
            ("g1", [], []),
            ("g2", [], []),
        ]
        assert len(keys) == 6 and stories == [NOW] * 3  # url + title keys; stories touched
        # More GUIDs than one IN list holds (500): the lookup is chunked.
        guids = [f"x{i}" for i in range(1200)]
        guids[0], guids[700] = "g0", "g2"
        assert st.articles.seen_guids(feed.id, guids) == {"g0", "g2"}
        # The same entries again: seen, nothing stored twice; their keys find their stories.
        again = st.articles.commit(items, feed_id=feed.id, stories=index, now=NOW + 1)
        assert [r.article_id for r in again] == [None, None, None]
        other = Article(feed="A", guid="n", url="https://a.example/news/1", title="t")
        [joined] = st.articles.commit(
            [(other, index.fingerprint(other), [], None)],
            feed_id=feed.id,
            stories=index,
            now=NOW + 2,
        )
        assert (joined.story_id, joined.story_reason) == (results[1].story_id, "url")
    finally:
        st.close()
