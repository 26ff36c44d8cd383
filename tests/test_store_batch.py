"""ArticleRepo.commit of a whole poll (one transaction, batched story keys) decides exactly as
committing the same entries one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from monitor.alerting import Alert
from monitor.models import Article
from monitor.store import FeedSpec, Route, RuleHit, Store
from monitor.store import schema as s
from monitor.stories import StoryIndex

NOW = 1_800_000_000.0
BODY = " ".join(f"word{i} common text about the harbour fire" for i in range(30))


def _store(path: Path) -> tuple[Store, int, int]:
    st = Store(f"sqlite:///{path}")
    st.feeds.sync(
        [
            FeedSpec("http://a.example/feed", "A", False),
            FeedSpec("http://b.example/feed", "B", False),
        ],
        NOW,
    )
    a, b = st.feeds.get("http://a.example/feed"), st.feeds.get("http://b.example/feed")
    assert a is not None and b is not None
    return st, a.id, b.id


def _articles(feed: str) -> list[Article]:
    return [
        # same URL twice in one poll (different GUIDs): the second joins the first's story
        Article(feed=feed, guid="1", url="https://x.example/a/fire", title="Fire in the harbour"),
        Article(feed=feed, guid="2", url="https://x.example/a/fire?utm_source=rss", title="x"),
        # same long title, other URL: a title match
        Article(
            feed=feed, guid="3", url="https://y.example/b", title="Large fire breaks out at harbour"
        ),
        Article(
            feed=feed, guid="4", url="https://z.example/c", title="Large fire breaks out at harbour"
        ),
        # near-duplicate bodies: a text match through LSH bands written in the same batch
        Article(feed=feed, guid="5", url="https://p.example/1", title="One", body=BODY),
        Article(feed=feed, guid="6", url="https://q.example/2", title="Two", body=BODY + " more"),
        Article(feed=feed, guid="1", url="https://x.example/a/fire", title="repeat GUID"),
        Article(feed=feed, guid="7", url="https://n.example/new", title="Something else entirely"),
    ]


def _hits(i: int) -> list[RuleHit]:
    route = Route(rule="r", severity="high", channels=[("hook", False)])
    alert = Alert.from_dict({"rule": "r", "title": "t", "created_at": "2026-11-25T10:30:00+00:00"})
    return [RuleHit(route, alert)] if i % 3 == 0 else []


def _decisions(st: Store) -> list[tuple[Any, ...]]:
    with st.engine.connect() as conn:
        arts = conn.execute(
            select(
                s.articles.c.feed_id,
                s.articles.c.guid,
                s.articles.c.story_id,
                s.articles.c.story_reason,
            ).order_by(s.articles.c.id)
        ).all()
        keys = conn.execute(
            select(s.story_keys.c.key, s.story_keys.c.story_id).order_by(s.story_keys.c.key)
        ).all()
        alerts = conn.execute(select(s.alerts.c.rule, s.alerts.c.story_id)).all()
    return [tuple(r) for r in arts] + [tuple(r) for r in keys] + sorted(tuple(r) for r in alerts)


def test_a_batched_poll_decides_as_entries_committed_one_by_one(tmp_path: Path) -> None:
    one, a1, b1 = _store(tmp_path / "one.db")
    many, a2, b2 = _store(tmp_path / "many.db")
    idx = StoryIndex(window=72 * 3600)
    for feed_one, feed_many, name in ((a1, a2, "A"), (b1, b2, "B")):
        items = [
            (art, idx.fingerprint(art), _hits(i), None) for i, art in enumerate(_articles(name))
        ]
        singles = [
            one.articles.commit([(art, fp, hits, None)], feed_id=feed_one, stories=idx, now=NOW)[0]
            for art, fp, hits, _ in items
        ]
        batched = many.articles.commit(items, feed_id=feed_many, stories=idx, now=NOW)
        assert [(r.article_id, r.story_id, r.story_reason, r.alerts) for r in singles] == [
            (r.article_id, r.story_id, r.story_reason, r.alerts) for r in batched
        ]
    assert _decisions(one) == _decisions(many)
    reasons = [r[3] for r in _decisions(many)[:14] if isinstance(r[3], str)]
    assert {"new", "url", "title"} <= set(reasons) and any(x.startswith("text~") for x in reasons)
    one.close()
    many.close()
