"""ArticleRepo.commit of a whole poll (one transaction, its writes batched into a few
multi-row statements) decides exactly as committing the same entries one by one, and the same
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from monitor.alerting import Alert
from monitor.models import Article
from monitor.store import FeedSpec, Route, RuleHit, Store
from monitor.store import schema as s
from monitor.store.stories import StoryRepo
from monitor.stories import StoryIndex

NOW = 1_800_000_000.0
BODY = " ".join(f"word{i} common text about the harbour fire" for i in range(30))
# Two pages of one site, Jaccard about 0.66: a text match between sites, not within one.
FLOOD = " ".join(f"item{i} another report on the river flood in town" for i in range(30))
FLOOD_EDITED = " ".join(
    f"item{i} another report on the river flood in town"
    if i % 8
    else f"changed{i} entirely different words here now ok"
    for i in range(30)
)


def _store(url: str) -> tuple[Store, int, int]:
    st = Store(url)
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
        # same site, similar text: stays two stories (same-site pages must be near-identical)
        Article(feed=feed, guid="8", url="https://s.example/1", title="Flood", body=FLOOD),
        Article(feed=feed, guid="9", url="https://s.example/2", title="Also", body=FLOOD_EDITED),
        Article(feed=feed, guid="1", url="https://x.example/a/fire", title="repeat GUID"),
        Article(feed=feed, guid="7", url="https://n.example/new", title="Something else entirely"),
    ]


ROUTE = Route(rule="r", severity="high", channels=[("hook", False)], updates=True)
# Waits for two outlets: released by the article that makes two, matching or not.
WAITING = Route(rule="w", severity="low", channels=[("hook", False)], min_sources=2, within=3600)


def _hits(i: int) -> list[RuleHit]:
    alert = Alert.from_dict({"rule": "r", "title": "t", "created_at": "2026-11-25T10:30:00+00:00"})
    waiting = Alert.from_dict(
        {"rule": "w", "title": "t", "created_at": "2026-11-25T10:30:00+00:00"}
    )
    hits = [RuleHit(ROUTE, alert)] if i % 3 == 0 else []
    return hits + ([RuleHit(WAITING, waiting)] if i == 2 else [])


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
        alerts = conn.execute(select(s.alerts.c.rule, s.alerts.c.story_id, s.alerts.c.status)).all()
        # What each delivery says: its kind and the story's sources when it was queued.
        sent = conn.execute(
            select(s.deliveries.c.kind, s.deliveries.c.payload).order_by(s.deliveries.c.id)
        ).all()
    payloads = [(kind, json.loads(p)["sources"]) for kind, p in sent]
    return (
        [tuple(r) for r in arts]
        + [tuple(r) for r in keys]
        + sorted(tuple(r) for r in alerts)
        + [(k, json.dumps(src)) for k, src in payloads]
    )


def _run(url_one: str, url_many: str) -> tuple[list[Any], list[Any]]:
    one, a1, b1 = _store(url_one)
    many, a2, b2 = _store(url_many)
    idx = StoryIndex(window=72 * 3600)
    routes = {"r": ROUTE, "w": WAITING}
    try:
        for feed_one, feed_many, name in ((a1, a2, "A"), (b1, b2, "B")):
            items = [
                (art, idx.fingerprint(art), _hits(i), None) for i, art in enumerate(_articles(name))
            ]
            singles = [
                one.articles.commit(
                    [(art, fp, hits, None)], feed_id=feed_one, stories=idx, now=NOW, routes=routes
                )[0]
                for art, fp, hits, _ in items
            ]
            batched = many.articles.commit(
                items, feed_id=feed_many, stories=idx, now=NOW, routes=routes
            )
            assert [_result(r) for r in singles] == [_result(r) for r in batched]
        return _decisions(one), _decisions(many)
    finally:
        one.close()
        many.close()


def _result(r: Any) -> tuple[Any, ...]:
    return (r.article_id, r.story_id, r.story_reason, r.alerts, r.updates, r.suppressed)


def test_a_batched_poll_decides_as_entries_committed_one_by_one(store_url: str) -> None:
    other = (
        store_url.replace("monitor.db", "many.db")
        if store_url.startswith("sqlite")
        else store_url + "_many"
    )
    if not store_url.startswith("sqlite"):
        _create_database(other)
    singles, batched = _run(store_url, other)
    assert singles == batched
    reasons = [r[3] for r in batched[:14] if isinstance(r[3], str)]
    assert {"new", "url", "title"} <= set(reasons) and any(x.startswith("text~") for x in reasons)
    # Feed B's outlet joined feed A's stories: updates went out and the waiting rule released.
    kinds = [r[0] for r in batched if r[0] in ("alert", "story.updated")]
    assert "story.updated" in kinds
    assert [r[2] for r in batched if len(r) == 3 and r[0] == "w"] == ["sent"]


def test_sqlite_and_postgresql_decide_the_same(tmp_path: Path, pg_url: str) -> None:
    """The batched commit on both engines: the same stories, keys, alerts and deliveries."""
    _create_database(pg_url + "_b")
    _, on_sqlite = _run(f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    _, on_postgres = _run(pg_url, pg_url + "_b")
    assert on_sqlite == on_postgres


def _create_database(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def test_lsh_candidates_bring_each_stored_article_once(store_url: str) -> None:
    """Copies of one text from eight sites: each joins the first's story by its text, and the
    candidates of a ninth copy are the eight stored articles, each read once (one candidate
    object for all the bands it shares) and in article order."""
    st, a, _ = _store(store_url)
    idx = StoryIndex(window=72 * 3600)
    try:
        copies = [
            Article(
                feed="A", guid=str(i), url=f"https://site{i}.example/x", title=f"T{i}", body=BODY
            )
            for i in range(8)
        ]
        results = st.articles.commit(
            [(art, idx.fingerprint(art), [], None) for art in copies],
            feed_id=a,
            stories=idx,
            now=NOW,
            routes={},
        )
        assert len({r.story_id for r in results}) == 1
        assert [r.story_reason.split("~")[0] for r in results] == ["new"] + ["text"] * 7
        fp = idx.fingerprint(Article(feed="A", guid="9", url="https://n.example/9", body=BODY))
        with st.engine.connect() as conn:
            rows = StoryRepo(idx)._band_rows(conn, fp.bands, NOW - 3600)
        ids = [row.article_id for _, row in rows]
        assert ids == sorted(ids) and sorted(set(ids)) == [r.article_id for r in results]
        assert len(rows) == 8 * len(fp.bands)  # an identical text shares every band
        assert len({id(row) for _, row in rows}) == 8
        assert all(row.minhash == rows[0][1].minhash for _, row in rows)
    finally:
        st.close()


def test_lsh_candidates_past_one_in_list(store_url: str) -> None:
    """Fifteen different texts: their 630 bands take two IN lists of the lookup, and every
    stored article comes back under each of its own bands."""
    st, a, _ = _store(store_url)
    idx = StoryIndex(window=72 * 3600)
    try:
        arts = [
            Article(
                feed="A",
                guid=str(i),
                url=f"https://site{i}.example/x",
                title=f"T{i}",
                body=" ".join(f"topic{i} word{j} of report {i * 1000 + j}" for j in range(60)),
            )
            for i in range(15)
        ]
        fps = [idx.fingerprint(art) for art in arts]
        results = st.articles.commit(
            [(art, fp, [], None) for art, fp in zip(arts, fps, strict=True)],
            feed_id=a,
            stories=idx,
            now=NOW,
            routes={},
        )
        assert [r.story_reason for r in results] == ["new"] * 15
        bands = [b for fp in fps for b in fp.bands]
        assert len(set(bands)) > 500
        with st.engine.connect() as conn:
            rows = StoryRepo(idx)._band_rows(conn, bands, NOW - 3600)
        got = {(band, row.article_id) for band, row in rows}
        for fp, r in zip(fps, results, strict=True):
            assert {(b, r.article_id) for b in fp.bands} <= got
    finally:
        st.close()
