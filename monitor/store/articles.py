"""Articles, their matches and their alerts, committed in ONE transaction with the outbox.

`commit_article` is the heart of "never miss, never repeat": the article row (unique per feed
and GUID), its story, its rule matches, the alerts (unique per rule and story) and one delivery
per channel are written together, or not at all. A crash before the commit leaves the entry new
for the next poll; after it, the deliveries are in the outbox.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    String,
    and_,
    bindparam,
    cast,
    distinct,
    func,
    insert,
    null,
    select,
    union_all,
    update,
)

from monitor.alerting import Action, Alert, AlertDecision, Route, StoryState, decide
from monitor.models import Article
from monitor.store import schema as s
from monitor.store.engine import arrays, new_id, read_tx, unnest_insert, write_tx
from monitor.store.outbox import Enqueue, enqueue
from monitor.store.stories import StoryRepo, grew, story_locks, take_story_locks
from monitor.stories import Fingerprint, StoryIndex

# Statements built once: building and compiling them per article cost more than running them.
# The entries of a feed already stored, or stored once and pruned since (their tombstones).
_SEEN = union_all(
    select(s.articles.c.guid, cast(null(), BigInteger).label("guid_hash")).where(
        s.articles.c.feed_id == bindparam("feed_id"),
        s.articles.c.guid.in_(bindparam("guids", expanding=True)),
    ),
    select(cast(null(), String).label("guid"), s.entry_tombstones.c.guid_hash).where(
        s.entry_tombstones.c.feed_id == bindparam("feed_id"),
        s.entry_tombstones.c.guid_hash.in_(bindparam("hashes", expanding=True)),
    ),
)
_SEEN_SQLITE = (
    "SELECT guid, NULL FROM articles WHERE feed_id = ? AND guid IN ({marks})"
    " UNION ALL SELECT NULL, guid_hash FROM entry_tombstones"
    " WHERE feed_id = ? AND guid_hash IN ({marks})"
)
# The same two INSERTs for SQLite's own cursor: SQLAlchemy's per-statement overhead (about
# 0.1 ms) was most of an article's commit, and the commit runs under the process's write lock.
_ARTICLE_COLUMNS = (
    "feed_id, guid, url, canonical_url, title, summary, body, authors, tags, published, "
    "fetched_at, extract_error, story_id, story_reason, minhash"
)
# PostgreSQL: every article (and every match) of a commit in one INSERT, ids in row order.
_PG_ARTICLE = (
    ("feed_id", "integer"),
    ("guid", "text"),
    ("url", "text"),
    ("canonical_url", "text"),
    ("title", "text"),
    ("summary", "text"),
    ("body", "text"),
    ("authors", "text"),
    ("tags", "text"),
    ("published", "float8"),
    ("fetched_at", "float8"),
    ("extract_error", "text"),
    ("story_id", "integer"),
    ("story_reason", "text"),
    ("minhash", "bytea"),
)
_PG_INSERT_ARTICLES = unnest_insert("articles", _PG_ARTICLE, "RETURNING id")
_PG_MATCH = (
    ("article_id", "integer"),
    ("rule", "text"),
    ("explanation", "text"),
    ("created_at", "float8"),
)
_PG_INSERT_MATCHES = unnest_insert("matches", _PG_MATCH)
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


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule's match on an article: where it alerts, and the alert it makes."""

    route: Route
    alert: Alert

    @property
    def explanation(self) -> list[dict[str, Any]]:
        return self.alert.why


class NewArticle(NamedTuple):
    """An article ready to commit: its story fingerprint, rule hits and extraction error."""

    article: Article
    fingerprint: Fingerprint
    hits: Sequence[RuleHit]
    extract_error: str | None = None


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

    def commit(
        self,
        items: Sequence[NewArticle]
        | Sequence[tuple[Article, Fingerprint, Sequence[RuleHit], str | None]],
        *,
        feed_id: int,
        stories: StoryIndex | StoryRepo,
        now: float,
        routes: Mapping[str, Route] | None = None,
        conn: Connection | None = None,
    ) -> list[CommitResult]:
        """Store new articles of one feed with their stories, matches, alerts and deliveries,
        in the caller's write transaction `conn` (the poll's commit, see `store.polls`) or in a
        transaction of their own. Entries are taken in order, each seeing the ones before it;
        one already stored (or repeated) is skipped with `article_id=None`.

        `stories` is the story index (or its `StoryRepo`) that decides each article's story.
        `routes` (every rule's route) lets an article that joins a story release alerts
        waiting for `min_sources`, even when this article does not match the rule itself.
        """
        if conn is None:
            with write_tx(self.engine) as own:
                # Its own transaction: its story locks first, as the group writer takes them.
                take_story_locks(own, story_locks([NewArticle(*i).fingerprint for i in items]))
                return self.commit(
                    items, feed_id=feed_id, stories=stories, now=now, routes=routes, conn=own
                )
        # Story identity is decided here. Two nodes deciding the same story at once hold one of
        # its advisory locks (`stories.story_locks`, taken by the group writer up front).
        news = [NewArticle(*item) for item in items]
        seen = self._seen(conn, feed_id, [n.article.guid for n in news])
        repo = stories if isinstance(stories, StoryRepo) else StoryRepo(stories)
        batch = repo.batch(conn, [n.fingerprint for n in news], now)
        fresh: list[tuple[NewArticle, int, str]] = []  # in order: (article, story, reason)
        results: list[CommitResult] = []
        for new in news:
            if new.article.guid in seen:  # stored before, or repeated within this poll
                results.append(CommitResult(article_id=None))
                continue
            seen.add(new.article.guid)
            story_id, reason, _new = batch.assign(
                new.fingerprint, title=new.article.title, url=new.article.url
            )
            batch.remember(new.fingerprint, story_id=story_id, article_id=0)  # ids: `written`
            fresh.append((new, story_id, reason))
            results.append(CommitResult(article_id=0))
        if not fresh:
            return results
        batch.write_stories()
        rows = [_article_row(feed_id, new, batch.resolve(sid), why, now) for new, sid, why in fresh]
        ids = _insert_articles(conn, rows)
        batch.written(ids)
        batch.flush()
        grew(conn, len(ids))
        _insert_matches(
            conn, [(aid, new.hits) for (new, _, _), aid in zip(fresh, ids, strict=True)], now
        )
        # Alerts last, article by article: each sees the story as of its own article (the
        # queries stop at its id), so decisions are those of storing one article at a time.
        done = iter(zip(fresh, ids, strict=True))
        for i, result in enumerate(results):
            if result.article_id is None:
                continue
            (new, sid, reason), article_id = next(done)
            results[i] = self._alerts(
                conn, new, article_id, batch.resolve(sid), reason, now, routes or {}
            )
        return results

    @staticmethod
    def _seen(conn: Connection, feed_id: int, guids: Sequence[str]) -> set[str]:
        """The GUIDs this feed has stored, or had stored before retention pruned them (one
        query over the articles and the tombstones)."""
        found: set[str] = set()
        cur = _sqlite_cursor(conn)
        for i in range(0, len(guids), 400):
            chunk = list(dict.fromkeys(guids[i : i + 400]))
            by_hash = {s.guid_key(g): g for g in chunk}
            hashes = list(by_hash)
            if cur is not None:
                sql = _SEEN_SQLITE.format(marks=", ".join("?" * len(chunk)))
                rows = cur.execute(sql, [feed_id, *chunk, feed_id, *hashes])
            else:
                rows = conn.execute(
                    _SEEN, {"feed_id": feed_id, "guids": chunk, "hashes": hashes}
                ).tuples()
            for guid, key in rows:
                found.add(guid if guid is not None else by_hash[key])
        return found

    def _alerts(
        self,
        conn: Connection,
        new: NewArticle,
        article_id: int,
        story_id: int,
        reason: str,
        now: float,
        routes: Mapping[str, Route],
    ) -> CommitResult:
        """The alert decisions of a stored article (its matches are stored)."""
        result = CommitResult(article_id=article_id, story_id=story_id, story_reason=reason)
        # Alerts of this story waiting for `min_sources` get another look too: the new article
        # may be the outlet that makes N, whether or not it matches the rule itself.
        candidates = list(new.hits) + self._waiting(conn, routes, new.hits, story_id)
        if candidates:
            # Only an alert shows its story's sources: no query for the many that match nothing.
            story = _StoryView(conn, story_id, article_id, now)
            for hit in candidates:
                self._alert(conn, hit, story, result)
        return result

    @staticmethod
    def _waiting(
        conn: Connection, routes: Mapping[str, Route], hits: Sequence[RuleHit], story_id: int
    ) -> list[RuleHit]:
        """This story's alerts waiting for more sources, of rules the article did not match."""
        if not routes:
            return []
        matched = {h.route.rule for h in hits}
        waiting = conn.execute(
            select(s.alerts.c.rule, s.alerts.c.message, s.matches.c.explanation)
            .outerjoin(
                s.matches,
                and_(
                    s.matches.c.article_id == s.alerts.c.article_id,
                    s.matches.c.rule == s.alerts.c.rule,
                ),
            )
            .where(s.alerts.c.story_id == story_id, s.alerts.c.status == "waiting")
        ).all()
        return [
            RuleHit(routes[w.rule], _stored_alert(w.message, w.explanation))
            for w in waiting
            if w.rule not in matched and w.rule in routes
        ]

    @staticmethod
    def _alert(conn: Connection, hit: RuleHit, story: _StoryView, result: CommitResult) -> None:
        """Read the story's state for this rule, `decide`, write what the decision says."""
        route, now = hit.route, story.now
        existing = conn.execute(
            select(s.alerts.c.id, s.alerts.c.key, s.alerts.c.status).where(
                s.alerts.c.rule == route.rule, s.alerts.c.story_id == story.story_id
            )
        ).first()
        decision = decide(route, story.state(route, existing.status if existing else None))
        if decision.action is Action.UPDATE:
            assert existing is not None
            result.deliveries += _fan_out(
                conn, decision, story, f"{existing.key}:update:{story.article_id}", existing.id
            )
            result.updates.append(route.rule)
            return
        status = decision.stored_status
        if status is None:
            return
        if existing is not None:  # a story that was waiting for more sources, released now
            conn.execute(
                update(s.alerts)
                .where(s.alerts.c.id == existing.id)
                .values(status=status, created_at=now)
            )
            alert_id, alert_key = int(existing.id), str(existing.key)
        else:
            alert_key = uuid.uuid4().hex
            alert_id = new_id(
                conn.execute(
                    insert(s.alerts).values(
                        key=alert_key,
                        rule=route.rule,
                        story_id=story.story_id,
                        article_id=story.article_id,
                        severity=route.severity,
                        status=status,
                        message=json.dumps(hit.alert.to_dict()),
                        created_at=now,
                    )
                )
            )
        if decision.action is not Action.ALERT:
            result.suppressed.append(route.rule)
            return
        result.deliveries += _fan_out(conn, decision, story, alert_key, alert_id)
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


def _article_row(
    feed_id: int, new: NewArticle, story_id: int, reason: str, now: float
) -> tuple[Any, ...]:
    """The article's row, in `_ARTICLE_COLUMNS` order."""
    a = new.article
    return (
        feed_id,
        a.guid,
        a.url,
        a.canonical_url,
        a.title,
        a.summary,
        a.body,
        _json_list(a.authors),
        _json_list(a.tags),
        a.published.timestamp() if a.published else None,
        now,
        new.extract_error,
        story_id,
        reason,
        new.fingerprint.minhash,
    )


def _insert_articles(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Insert the rows; their ids in order. One statement on PostgreSQL (insertmanyvalues)."""
    cur = _sqlite_cursor(conn)
    if cur is not None:  # in-process: a row at a time costs no round trip, and gives its id
        ids = []
        for row in rows:
            cur.execute(_SQLITE_INSERT_ARTICLE, row)
            ids.append(int(cur.lastrowid))
        return ids
    return [int(i) for i in conn.execute(_PG_INSERT_ARTICLES, arrays(_PG_ARTICLE, rows)).scalars()]


def _insert_matches(
    conn: Connection, hits: Sequence[tuple[int, Sequence[RuleHit]]], now: float
) -> None:
    """Every rule match of the stored articles, in one statement. The explanation's one
    stored copy: the alert reads it from here (`Alert`)."""
    rows = [
        (article_id, hit.route.rule, json.dumps(hit.explanation), now)
        for article_id, article_hits in hits
        for hit in article_hits
    ]
    if not rows:
        return
    cur = _sqlite_cursor(conn)
    if cur is not None:
        cur.executemany(_SQLITE_INSERT_MATCH, rows)
        return
    conn.execute(_PG_INSERT_MATCHES, arrays(_PG_MATCH, rows))


class _StoryView:
    """The story an article just joined, as alert decisions see it (queried when asked)."""

    def __init__(self, conn: Connection, story_id: int, article_id: int, now: float) -> None:
        self.conn, self.story_id, self.article_id, self.now = conn, story_id, article_id, now
        self._sources: tuple[list[dict[str, str]], bool] | None = None

    @property
    def sources(self) -> list[dict[str, str]]:
        return self._outlets()[0]

    def _outlets(self) -> tuple[list[dict[str, str]], bool]:
        if self._sources is None:
            self._sources = _story_sources(self.conn, self.story_id, self.article_id)
        return self._sources

    def state(self, route: Route, previous: str | None) -> StoryState:
        outlets = 1
        if route.min_sources is not None and previous in (None, "waiting"):
            outlets = self.conn.execute(
                select(func.count(distinct(s.articles.c.feed_id))).where(
                    s.articles.c.story_id == self.story_id,
                    s.articles.c.fetched_at >= self.now - (route.within or 0),
                    s.articles.c.id <= self.article_id,  # not the later articles of the commit
                )
            ).scalar_one()
        last_sent = None
        if route.cooldown and previous in (None, "waiting"):
            last_sent = self.conn.execute(
                select(func.max(s.alerts.c.created_at)).where(
                    s.alerts.c.rule == route.rule, s.alerts.c.status == "sent"
                )
            ).scalar_one()
        return StoryState(
            now=self.now,
            previous=previous,
            outlets=int(outlets),
            last_sent_at=last_sent,
            new_outlet=self._outlets()[1] if previous == "sent" and route.updates else False,
        )


def _stored_alert(message: str, explanation: str | None) -> Alert:
    """An alert row's message with its explanation from the match row (stored once there)."""
    d = json.loads(message)
    return Alert.from_dict(d, why=None if "why" in d else json.loads(explanation or "[]"))


def stored_article(row: Mapping[str, Any]) -> Article:
    """An `ArticleRepo.recent` row as the article the rules saw when it was stored."""
    published = row.get("published")
    return Article(
        feed=row["feed_name"],
        guid=row["guid"],
        url=row["url"],
        title=row["title"] or "",
        summary=row["summary"] or "",
        body=row["body"] or "",
        published=datetime.fromtimestamp(published, UTC) if published is not None else None,
        authors=json.loads(row["authors"] or "[]"),
        tags=json.loads(row["tags"] or "[]"),
        canonical_url=row.get("canonical_url"),
    )


def _fan_out(
    conn: Connection,
    decision: AlertDecision,
    story: _StoryView,
    key_base: str,
    alert_id: int,
) -> int:
    """One delivery per channel of the decision (keyed `<key_base>:<channel>`), in the
    caller's transaction. Returns how many were queued."""
    kind = "story.updated" if decision.action is Action.UPDATE else "alert"
    # Only what differs per delivery: the alert itself is the alert row (see `Alert`).
    per_send = {"kind": kind, "story_id": story.story_id, "sources": story.sources}
    queued = 0
    for channel, held in decision.channels:
        key = f"{key_base}:{channel}"
        queued += enqueue(
            conn,
            Enqueue(channel=channel, kind=kind, key=key, held=held, alert_id=alert_id),
            payload=dict(per_send, idempotency_key=key),
            now=story.now,
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
        # Not the later articles of the same commit: the story as this article found it.
        .where(s.articles.c.story_id == story_id, s.articles.c.id <= article_id)
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
