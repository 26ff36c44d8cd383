"""Articles, their matches and their alerts, committed in ONE transaction with the outbox.

`commit_article` is the heart of "never miss, never repeat": the article row (unique per feed
and GUID), its story, its rule matches, the alerts (unique per rule and story) and one delivery
per channel are written together, or not at all. A crash before the commit leaves the entry new
for the next poll; after it, the deliveries are in the outbox.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, distinct, func, insert, select, update

from monitor.models import Article
from monitor.store import schema as s
from monitor.store.engine import new_id, read_tx, serialise, write_tx
from monitor.store.outbox import enqueue
from monitor.stories import Fingerprint, StoryBatch, StoryIndex

# Statements built once: building and compiling them per article cost more than running them.
_SEEN = select(s.articles.c.guid).where(
    s.articles.c.feed_id == bindparam("feed_id"),
    s.articles.c.guid.in_(bindparam("guids", expanding=True)),
)
_INSERT_ARTICLE = insert(s.articles)
_INSERT_MATCH = insert(s.matches)
# The same two INSERTs for SQLite's own cursor: SQLAlchemy's per-statement overhead (about
# 0.1 ms) was most of an article's commit, and the commit runs under the process's write lock.
_ARTICLE_COLUMNS = (
    "feed_id, guid, url, canonical_url, title, summary, body, authors, tags, published, "
    "fetched_at, extract_error, story_id, story_reason, minhash"
)
_SQLITE_INSERT_ARTICLE = f"INSERT INTO articles ({_ARTICLE_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_SQLITE_INSERT_MATCH = (
    "INSERT INTO matches (article_id, rule, explanation, created_at) VALUES (?, ?, ?, ?)"
)


def _sqlite_cursor(conn: Connection) -> Any:
    """The DBAPI cursor of `conn`'s transaction on SQLite (None elsewhere)."""
    if conn.dialect.name != "sqlite":
        return None
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(values) if values else "[]"


@dataclass(slots=True)
class Route:
    """Where and how a rule alerts (computed from the config by the pipeline)."""

    rule: str
    severity: str
    channels: list[tuple[str, bool]]  # (channel, held for a digest)
    cooldown: float | None = None
    updates: bool = False
    min_sources: int | None = None
    within: float | None = None


@dataclass(slots=True)
class RuleHit:
    route: Route
    explanation: list[dict[str, Any]]  # the hits: field, leaf, text, start, end
    message: dict[str, Any]  # AlertMessage fields except the per-alert / per-channel ones


@dataclass(slots=True)
class CommitResult:
    article_id: int | None  # None: the entry was already stored (seen before)
    story_id: int | None = None
    story_reason: str = ""
    alerts: list[str] = field(default_factory=list)  # rules that alerted
    updates: list[str] = field(default_factory=list)  # rules whose story gained a source
    suppressed: list[str] = field(default_factory=list)  # rules in cooldown / below min_sources
    deliveries: int = 0


class ArticleRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def seen_guids(self, feed_id: int, guids: Sequence[str]) -> set[str]:
        """Which of these entry keys this feed already has."""
        if not guids:
            return set()
        with read_tx(self.engine) as conn:
            return self._seen(conn, feed_id, guids)

    def commit_article(
        self,
        *,
        feed_id: int,
        article: Article,
        fingerprint: Fingerprint,
        hits: Sequence[RuleHit],
        stories: StoryIndex,
        now: float,
        extract_error: str | None = None,
        routes: Mapping[str, Route] | None = None,
    ) -> CommitResult:
        """Store one new article with its story, matches, alerts and deliveries.

        `routes` (every rule's route) lets an article that joins a story release alerts
        waiting for `min_sources`, even when this article does not match the rule itself.
        """
        with write_tx(self.engine) as conn:
            return self._commit(
                conn,
                feed_id=feed_id,
                article=article,
                fingerprint=fingerprint,
                hits=hits,
                stories=stories,
                now=now,
                extract_error=extract_error,
                routes=routes,
            )

    def commit_articles(
        self,
        *,
        feed_id: int,
        items: Sequence[tuple[Article, Fingerprint, Sequence[RuleHit], str | None]],
        stories: StoryIndex,
        now: float,
        routes: Mapping[str, Route] | None = None,
        after: Callable[[Connection, int], object] | None = None,
    ) -> list[CommitResult]:
        """`commit_article` for several (article, fingerprint, hits, extract_error) of one feed
        in ONE transaction: one fsync per poll instead of one per entry, same guarantees and the
        same story decisions (entries are taken in order, each seeing the ones before it).

        Cheaper per entry than `commit_article`: the story lock is taken once, the already-seen
        check is one query for the whole poll, and story keys go through a `StoryBatch`.

        `after(conn, stored)` runs last inside the same transaction, with how many entries were
        stored (the pipeline records the poll there, so a poll with new entries costs one
        commit and one fsync, not two).
        """
        with write_tx(self.engine) as conn:
            return self.commit_articles_in(
                conn,
                feed_id=feed_id,
                items=items,
                stories=stories,
                now=now,
                routes=routes,
                after=after,
            )

    def commit_articles_in(
        self,
        conn: Connection,
        *,
        feed_id: int,
        items: Sequence[tuple[Article, Fingerprint, Sequence[RuleHit], str | None]],
        stories: StoryIndex,
        now: float,
        routes: Mapping[str, Route] | None = None,
        after: Callable[[Connection, int], object] | None = None,
    ) -> list[CommitResult]:
        """`commit_articles` inside the caller's write transaction (e.g. `GroupWriter`'s)."""
        # Story identity is decided here; two nodes must not both open the same story.
        serialise(conn, "stories")
        seen = self._seen(conn, feed_id, [article.guid for article, *_ in items])
        batch = stories.batch(conn, [fp for _, fp, _, _ in items], now)
        results: list[CommitResult] = []
        for article, fingerprint, hits, extract_error in items:
            if article.guid in seen:  # stored before, or repeated within this poll
                results.append(CommitResult(article_id=None))
                continue
            seen.add(article.guid)
            results.append(
                self._store(
                    conn,
                    feed_id=feed_id,
                    article=article,
                    fingerprint=fingerprint,
                    hits=hits,
                    stories=stories,
                    batch=batch,
                    now=now,
                    extract_error=extract_error,
                    routes=routes,
                )
            )
        batch.flush()
        if after is not None:
            after(conn, sum(1 for r in results if r.article_id is not None))
        return results

    @staticmethod
    def _seen(conn: Connection, feed_id: int, guids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        cur = _sqlite_cursor(conn)
        for i in range(0, len(guids), 500):
            chunk = list(guids[i : i + 500])
            if cur is not None:
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT guid FROM articles WHERE feed_id = ? AND guid IN ({marks})"
                found.update(row[0] for row in cur.execute(sql, [feed_id, *chunk]))
            else:
                found.update(conn.execute(_SEEN, {"feed_id": feed_id, "guids": chunk}).scalars())
        return found

    def _commit(
        self,
        conn: Connection,
        *,
        feed_id: int,
        article: Article,
        fingerprint: Fingerprint,
        hits: Sequence[RuleHit],
        stories: StoryIndex,
        now: float,
        extract_error: str | None,
        routes: Mapping[str, Route] | None = None,
    ) -> CommitResult:
        # Story identity is decided here; two nodes must not both open the same story.
        serialise(conn, "stories")
        if conn.execute(_SEEN, {"feed_id": feed_id, "guids": [article.guid]}).first():
            return CommitResult(article_id=None)
        return self._store(
            conn,
            feed_id=feed_id,
            article=article,
            fingerprint=fingerprint,
            hits=hits,
            stories=stories,
            batch=None,
            now=now,
            extract_error=extract_error,
            routes=routes,
        )

    def _store(
        self,
        conn: Connection,
        *,
        feed_id: int,
        article: Article,
        fingerprint: Fingerprint,
        hits: Sequence[RuleHit],
        stories: StoryIndex,
        batch: StoryBatch | None,
        now: float,
        extract_error: str | None,
        routes: Mapping[str, Route] | None,
    ) -> CommitResult:
        """Store a new article (not seen before; the story lock is held)."""
        if batch is not None:
            story_id, reason, _new = batch.assign(fingerprint, title=article.title, url=article.url)
        else:
            story_id, reason, _new = stories.assign(
                conn, fingerprint, title=article.title, url=article.url, now=now
            )
        published = article.published.timestamp() if article.published else None
        cur = _sqlite_cursor(conn)
        if cur is not None:
            cur.execute(
                _SQLITE_INSERT_ARTICLE,
                (
                    feed_id,
                    article.guid,
                    article.url,
                    article.canonical_url,
                    article.title,
                    article.summary,
                    article.body,
                    _json_list(article.authors),
                    _json_list(article.tags),
                    published,
                    now,
                    extract_error,
                    story_id,
                    reason,
                    fingerprint.minhash,
                ),
            )
            article_id = int(cur.lastrowid)
        else:
            # One statement object for every article: SQLAlchemy compiles it once (its cache),
            # where `insert(...).values(...)` per article was built and compiled each time.
            article_id = new_id(
                conn.execute(
                    _INSERT_ARTICLE,
                    {
                        "feed_id": feed_id,
                        "guid": article.guid,
                        "url": article.url,
                        "canonical_url": article.canonical_url,
                        "title": article.title,
                        "summary": article.summary,
                        "body": article.body,
                        "authors": _json_list(article.authors),
                        "tags": _json_list(article.tags),
                        "published": published,
                        "fetched_at": now,
                        "extract_error": extract_error,
                        "story_id": story_id,
                        "story_reason": reason,
                        "minhash": fingerprint.minhash,
                    },
                )
            )
        if batch is not None:
            batch.remember(fingerprint, story_id=story_id, article_id=article_id)
        else:
            stories.remember(conn, fingerprint, story_id=story_id, article_id=article_id, now=now)
        result = CommitResult(article_id=article_id, story_id=story_id, story_reason=reason)
        # Only an alert shows its story's sources: skip the query for the many that match nothing.
        sources, new_outlet = _story_sources(conn, story_id, article_id) if hits else ([], False)
        for hit in hits:
            explanation = json.dumps(hit.explanation)
            if cur is not None:
                cur.execute(_SQLITE_INSERT_MATCH, (article_id, hit.route.rule, explanation, now))
            else:
                conn.execute(
                    _INSERT_MATCH,
                    {
                        "article_id": article_id,
                        "rule": hit.route.rule,
                        "explanation": explanation,
                        "created_at": now,
                    },
                )
            self._alert(
                conn,
                hit,
                article_id=article_id,
                story_id=story_id,
                sources=sources,
                new_outlet=new_outlet,
                now=now,
                result=result,
            )
        if routes:
            self._release_waiting(conn, routes, hits, article_id, story_id, now, result)
        return result

    def _release_waiting(
        self,
        conn: Connection,
        routes: Mapping[str, Route],
        hits: Sequence[RuleHit],
        article_id: int,
        story_id: int,
        now: float,
        result: CommitResult,
    ) -> None:
        """Alerts of this story waiting for `min_sources` get another look: the new article
        may be the outlet that makes N, whether or not it matches the rule itself."""
        matched = {h.route.rule for h in hits}
        waiting = conn.execute(
            select(s.alerts.c.rule, s.alerts.c.message).where(
                s.alerts.c.story_id == story_id, s.alerts.c.status == "waiting"
            )
        ).all()
        waiting = [w for w in waiting if w.rule not in matched and w.rule in routes]
        if not waiting:
            return
        sources, new_outlet = _story_sources(conn, story_id, article_id)
        for w in waiting:
            hit = RuleHit(route=routes[w.rule], explanation=[], message=json.loads(w.message))
            self._alert(
                conn,
                hit,
                article_id=article_id,
                story_id=story_id,
                sources=sources,
                new_outlet=new_outlet,
                now=now,
                result=result,
            )

    def _alert(
        self,
        conn: Connection,
        hit: RuleHit,
        *,
        article_id: int,
        story_id: int,
        sources: list[dict[str, str]],
        new_outlet: bool,
        now: float,
        result: CommitResult,
    ) -> None:
        route = hit.route
        existing = conn.execute(
            select(s.alerts.c.id, s.alerts.c.key, s.alerts.c.status).where(
                s.alerts.c.rule == route.rule, s.alerts.c.story_id == story_id
            )
        ).first()
        if existing is not None and existing.status != "waiting":
            if route.updates and existing.status == "sent" and new_outlet:
                result.deliveries += _fan_out(
                    conn,
                    hit,
                    "story.updated",
                    f"{existing.key}:update:{article_id}",
                    alert_id=int(existing.id),
                    story_id=story_id,
                    sources=sources,
                    now=now,
                )
                result.updates.append(route.rule)
            return
        status = "sent"
        if route.min_sources is not None:
            window_start = now - (route.within or 0)
            n = conn.execute(
                select(func.count(distinct(s.articles.c.feed_id))).where(
                    s.articles.c.story_id == story_id, s.articles.c.fetched_at >= window_start
                )
            ).scalar_one()
            if n < route.min_sources:
                status = "waiting"
        if status == "sent" and route.cooldown:
            recent = conn.execute(
                select(s.alerts.c.id)
                .where(
                    s.alerts.c.rule == route.rule,
                    s.alerts.c.status == "sent",
                    s.alerts.c.created_at > now - route.cooldown,
                )
                .limit(1)
            ).first()
            if recent is not None:
                status = "suppressed"
        if existing is not None:  # a story that was waiting for more sources
            if status != "sent":
                return
            conn.execute(
                update(s.alerts)
                .where(s.alerts.c.id == existing.id)
                .values(status="sent", created_at=now)
            )
            alert_id, alert_key = int(existing.id), str(existing.key)
        else:
            alert_key = uuid.uuid4().hex
            alert_id = new_id(
                conn.execute(
                    insert(s.alerts).values(
                        key=alert_key,
                        rule=route.rule,
                        story_id=story_id,
                        article_id=article_id,
                        severity=route.severity,
                        status=status,
                        message=json.dumps(hit.message),
                        created_at=now,
                    )
                )
            )
        if status != "sent":
            result.suppressed.append(route.rule)
            return
        result.deliveries += _fan_out(
            conn,
            hit,
            "alert",
            alert_key,
            alert_id=alert_id,
            story_id=story_id,
            sources=sources,
            now=now,
        )
        result.alerts.append(route.rule)

    def recent(self, since: float, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored articles fetched since `since` (for backtests), newest first."""
        with read_tx(self.engine) as conn:
            q = (
                select(s.articles, s.feeds.c.name.label("feed_name"))
                .join(s.feeds, s.feeds.c.id == s.articles.c.feed_id)
                .where(s.articles.c.fetched_at >= since)
                .order_by(s.articles.c.fetched_at.desc())
            )
            if limit:
                q = q.limit(limit)
            return [dict(r._mapping) for r in conn.execute(q)]


def _fan_out(
    conn: Connection,
    hit: RuleHit,
    kind: str,
    key_base: str,
    *,
    alert_id: int,
    story_id: int,
    sources: list[dict[str, str]],
    now: float,
) -> int:
    """One delivery per channel of the rule's route (keyed `<key_base>:<channel>`), in the
    caller's transaction. Returns how many were queued."""
    route = hit.route
    msg = dict(
        hit.message,
        kind=kind,
        alert_id=alert_id,
        story_id=story_id,
        sources=sources,
        rule=route.rule,
        severity=route.severity,
    )
    queued = 0
    for channel, held in route.channels:
        key = f"{key_base}:{channel}"
        queued += enqueue(
            conn,
            channel=channel,
            kind=kind,
            key=key,
            payload=dict(msg, idempotency_key=key),
            now=now,
            alert_id=alert_id,
            held=held,
        )
    return queued


def _story_sources(
    conn: Connection, story_id: int, article_id: int
) -> tuple[list[dict[str, str]], bool]:
    """One source per outlet carrying the story (its first article), and whether
    `article_id` brought a new outlet to it (a re-sent or re-GUIDed item does not)."""
    rows = conn.execute(
        select(
            s.articles.c.id,
            s.articles.c.feed_id,
            s.feeds.c.name,
            s.articles.c.url,
            s.articles.c.title,
            s.articles.c.story_reason,
        )
        .join(s.feeds, s.feeds.c.id == s.articles.c.feed_id)
        .where(s.articles.c.story_id == story_id)
        .order_by(s.articles.c.id)
    ).all()
    first_of_feed: dict[int, Any] = {}
    for r in rows:
        first_of_feed.setdefault(r.feed_id, r)
    sources = [
        {"feed": r.name, "url": r.url, "title": r.title, "reason": r.story_reason or ""}
        for r in first_of_feed.values()
    ]
    new_outlet = any(r.id == article_id for r in first_of_feed.values()) and len(sources) > 1
    return sources, new_outlet
