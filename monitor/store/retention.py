"""Retention: old articles, story fingerprints, alerts and finished deliveries are deleted.

What is still needed is never deleted (docs/retention.md):

- an article while a stored alert points to it, or while its story is still open (updated
  within `stories.window`: its outlets are counted for `min_sources` and updates);
- story keys and LSH bands while they are within `stories.window` (story assignment reads
  them); a story while an article or alert still points to it;
- an alert while any of its deliveries is pending, failing or held, while its story is open,
  while it has feedback (labelled data for `evaluate` and `train`), or while it is its rule's
  newest alert (the cooldown reads it).

A pruned article leaves a tombstone (its feed and a hash of its GUID, `entry_tombstones`) in
the same transaction: the seen check reads it, so an entry its feed still lists is not stored
and alerted again. Tombstones go after `retention.tombstones`.

Each step deletes at most `retention.batch` rows in one short piece of the store's group
writer, so the polls' commits queue behind it for milliseconds, never for a whole prune. On
SQLite the freed pages are then given back to the file system with `PRAGMA
incremental_vacuum`, a few thousand pages at a time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, exists, func, select, text, tuple_

from monitor.store import schema as s
from monitor.store.engine import read_tx

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.store import Store

log = logging.getLogger("monitor.retention")

#: Deliveries that are done with: nothing of them will be sent again.
FINISHED = ("sent", "dead", "digested")
#: An existing SQLite database without incremental vacuum is converted (one VACUUM, which
#: rewrites the file and blocks writers meanwhile) only up to this size; a larger one is
#: named in the log with the command to run while the daemon is stopped.
CONVERT_LIMIT = 64 * 1024 * 1024
#: Pages (4 KiB by default) given back per incremental vacuum step.
VACUUM_STEP = 2048
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Ages in seconds (None: kept forever), the story window and the batch size."""

    articles: float | None
    alerts: float | None
    window: float
    batch: int = 500
    tombstones: float | None = 365 * DAY

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        r = settings.retention
        return cls(
            articles=r.articles.total_seconds() if r.articles is not None else None,
            alerts=r.alerts.total_seconds() if r.alerts is not None else None,
            window=settings.stories.window.total_seconds(),
            batch=r.batch,
            tombstones=r.tombstones.total_seconds() if r.tombstones is not None else None,
        )

    def article_cutoff(self, now: float) -> float | None:
        """Articles fetched before this may go (never inside the story window)."""
        if self.articles is None:
            return None
        return now - max(self.articles, self.window)

    def alert_cutoff(self, now: float) -> float | None:
        if self.alerts is None:
            return None
        return now - max(self.alerts, self.window)

    def story_cutoff(self, now: float) -> float:
        return now - self.window

    def tombstone_cutoff(self, now: float) -> float | None:
        """Tombstones made (their article pruned) before this may go."""
        return None if self.tombstones is None else now - self.tombstones


@dataclass(slots=True)
class Pruned:
    """Rows deleted, by table."""

    alerts: int = 0
    deliveries: int = 0
    articles: int = 0
    matches: int = 0
    story_bands: int = 0
    story_keys: int = 0
    stories: int = 0
    tombstones: int = 0
    vacuumed_pages: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(
            getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("vacuumed_pages", "errors")
        )

    def add(self, other: Pruned) -> None:
        for f in fields(self):
            if f.name != "errors":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary(self) -> str:
        parts = [
            f"{getattr(self, f.name)} {f.name.replace('_', ' ')}"
            for f in fields(self)
            if f.name not in ("vacuumed_pages", "errors") and getattr(self, f.name)
        ]
        return ", ".join(parts) or "nothing"


# ---------------------------------------------------------------- one batch of each kind


def _ids(conn: Connection, q: Any) -> list[int]:
    return [int(i) for i in conn.execute(q).scalars()]


def prune_alerts(conn: Connection, cutoff: float, story_cutoff: float, limit: int) -> Pruned:
    """Up to `limit` alerts older than `cutoff` that nothing needs, with their deliveries."""
    a, d = s.alerts, s.deliveries
    unfinished = exists().where(d.c.alert_id == a.c.id, d.c.status.not_in(FINISHED))
    has_feedback = exists().where(s.feedback.c.alert_id == a.c.id)
    open_story = exists().where(
        s.stories.c.id == a.c.story_id, s.stories.c.updated_at >= story_cutoff
    )
    newest_of_rule = select(func.max(a.c.id)).group_by(a.c.rule)
    ids = _ids(
        conn,
        select(a.c.id)
        .where(
            a.c.created_at < cutoff,
            ~unfinished,
            ~has_feedback,
            ~open_story,
            a.c.id.not_in(newest_of_rule),
        )
        .order_by(a.c.id)
        .limit(limit),
    )
    if not ids:
        return Pruned()
    out = Pruned()
    out.deliveries = int(conn.execute(delete(d).where(d.c.alert_id.in_(ids))).rowcount)
    out.alerts = int(conn.execute(delete(a).where(a.c.id.in_(ids))).rowcount)
    return out


def prune_notices(conn: Connection, cutoff: float, limit: int) -> Pruned:
    """Up to `limit` finished deliveries without an alert (health notices, digests)."""
    d = s.deliveries
    ids = _ids(
        conn,
        select(d.c.id)
        .where(d.c.alert_id.is_(None), d.c.status.in_(FINISHED), d.c.created_at < cutoff)
        .order_by(d.c.id)
        .limit(limit),
    )
    if not ids:
        return Pruned()
    return Pruned(deliveries=int(conn.execute(delete(d).where(d.c.id.in_(ids))).rowcount))


def prune_articles(
    conn: Connection, cutoff: float, story_cutoff: float, limit: int, *, now: float | None = None
) -> Pruned:
    """Up to `limit` articles fetched before `cutoff` that no alert and no open story needs,
    with their matches and LSH bands; each leaves its tombstone, made at `now`."""
    ar, st = s.articles, s.stories
    open_story = exists().where(st.c.id == ar.c.story_id, st.c.updated_at >= story_cutoff)
    rows = conn.execute(
        select(ar.c.id, ar.c.feed_id, ar.c.guid)
        .where(
            ar.c.fetched_at < cutoff,
            ~open_story,
            ar.c.id.not_in(select(s.alerts.c.article_id)),
        )
        .order_by(ar.c.fetched_at, ar.c.id)
        .limit(limit)
    ).all()
    if not rows:
        return Pruned()
    ids = [int(r.id) for r in rows]
    _bury(conn, [(int(r.feed_id), str(r.guid)) for r in rows], time.time() if now is None else now)
    out = Pruned()
    out.matches = int(
        conn.execute(delete(s.matches).where(s.matches.c.article_id.in_(ids))).rowcount
    )
    out.story_bands = int(
        conn.execute(delete(s.story_bands).where(s.story_bands.c.article_id.in_(ids))).rowcount
    )
    out.articles = int(conn.execute(delete(ar).where(ar.c.id.in_(ids))).rowcount)
    return out


def _bury(conn: Connection, entries: list[tuple[int, str]], now: float) -> None:
    """Tombstones for these (feed, GUID) pairs; one already there is kept as it is."""
    values = [{"feed_id": f, "guid_hash": s.guid_key(g), "pruned_at": now} for f, g in entries]
    # The connection's own dialect, loaded already (naming both here would load PostgreSQL's
    # package in every process on SQLite: `schema.declare_postgresql`).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql as dialect
    else:
        from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
    conn.execute(dialect.insert(s.entry_tombstones).on_conflict_do_nothing(), values)


def prune_tombstones(conn: Connection, cutoff: float, limit: int) -> Pruned:
    """Up to `limit` tombstones made before `cutoff`."""
    t = s.entry_tombstones
    oldest = select(t.c.feed_id, t.c.guid_hash).where(t.c.pruned_at < cutoff).limit(limit)
    gone = conn.execute(delete(t).where(tuple_(t.c.feed_id, t.c.guid_hash).in_(oldest)))
    return Pruned(tombstones=int(gone.rowcount))


def prune_fingerprints(conn: Connection, story_cutoff: float, limit: int) -> Pruned:
    """Up to `limit` story keys and `limit` LSH bands last seen before the story window."""
    k, b = s.story_keys, s.story_bands
    keys = [
        str(x)
        for x in conn.execute(
            select(k.c.key).where(k.c.seen_at < story_cutoff).limit(limit)
        ).scalars()
    ]
    bands = _ids(conn, select(b.c.id).where(b.c.seen_at < story_cutoff).limit(limit))
    out = Pruned()
    if keys:
        out.story_keys = int(conn.execute(delete(k).where(k.c.key.in_(keys))).rowcount)
    if bands:
        out.story_bands = int(conn.execute(delete(b).where(b.c.id.in_(bands))).rowcount)
    return out


def prune_stories(conn: Connection, story_cutoff: float, limit: int) -> Pruned:
    """Up to `limit` closed stories no article and no alert points to any more."""
    st = s.stories
    ids = _ids(
        conn,
        select(st.c.id)
        .where(
            st.c.updated_at < story_cutoff,
            ~exists().where(s.articles.c.story_id == st.c.id),
            ~exists().where(s.alerts.c.story_id == st.c.id),
            ~exists().where(
                s.story_keys.c.story_id == st.c.id, s.story_keys.c.seen_at >= story_cutoff
            ),
        )
        .order_by(st.c.id)
        .limit(limit),
    )
    if not ids:
        return Pruned()
    out = Pruned()
    out.story_keys = int(
        conn.execute(delete(s.story_keys).where(s.story_keys.c.story_id.in_(ids))).rowcount
    )
    out.stories = int(conn.execute(delete(st).where(st.c.id.in_(ids))).rowcount)
    return out


def _steps(policy: RetentionPolicy, now: float) -> list[Callable[[Connection], Pruned]]:
    """The batch functions of one prune, in the order that frees the most: alerts first (their
    articles may go next), then the articles, then what only they held."""
    story_cutoff = policy.story_cutoff(now)
    n = policy.batch
    steps: list[Callable[[Connection], Pruned]] = []
    if (alert_cutoff := policy.alert_cutoff(now)) is not None:
        steps.append(
            functools.partial(prune_alerts, cutoff=alert_cutoff, story_cutoff=story_cutoff, limit=n)
        )
        steps.append(functools.partial(prune_notices, cutoff=alert_cutoff, limit=n))
    if (article_cutoff := policy.article_cutoff(now)) is not None:
        steps.append(
            functools.partial(
                prune_articles, cutoff=article_cutoff, story_cutoff=story_cutoff, limit=n, now=now
            )
        )
    if (tombstone_cutoff := policy.tombstone_cutoff(now)) is not None:
        steps.append(functools.partial(prune_tombstones, cutoff=tombstone_cutoff, limit=n))
    steps.append(functools.partial(prune_fingerprints, story_cutoff=story_cutoff, limit=n))
    if policy.articles is not None:
        steps.append(functools.partial(prune_stories, story_cutoff=story_cutoff, limit=n))
    return steps


def _full(p: Pruned, limit: int) -> bool:
    """Whether a batch may have left more of its kind (it deleted a whole batch)."""
    most = max(p.alerts, p.articles, p.stories, p.story_keys, p.story_bands, p.deliveries)
    return max(most, p.tombstones) >= limit


async def prune(store: Store, policy: RetentionPolicy, *, now: float | None = None) -> Pruned:
    """Delete everything `policy` lets go, batch by batch through the store's group writer,
    then give SQLite's free pages back. Returns what went."""
    now = time.time() if now is None else now
    total = Pruned()
    for step in _steps(policy, now):
        while True:
            done = await store.writer.run(step)
            total.add(done)
            if not _full(done, policy.batch):
                break
            await asyncio.sleep(0)  # let the polls' commits in between batches
    if store.engine.dialect.name == "sqlite":
        total.vacuumed_pages = await asyncio.to_thread(incremental_vacuum, store.engine)
    return total


# ---------------------------------------------------------------- SQLite space


def _raw(engine: Engine) -> Any:
    return engine.raw_connection()


def incremental_vacuum(engine: Engine, *, step: int = VACUUM_STEP) -> int:
    """Give SQLite's free pages back to the file system, `step` pages per transaction; how
    many went. Does nothing for a database without `auto_vacuum=INCREMENTAL`."""
    raw = _raw(engine)
    try:
        conn = raw.driver_connection
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return 0
        freed = 0
        while True:
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if free == 0:
                return freed
            # executescript steps the pragma to its end (execute frees one page per step).
            conn.executescript(f"PRAGMA incremental_vacuum({min(free, step)})")
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if after >= free:
                return freed
            freed += free - after
    finally:
        raw.close()


def ensure_incremental_vacuum(engine: Engine, *, limit: int = CONVERT_LIMIT) -> str:
    """Turn an existing SQLite database without incremental vacuum into one (a VACUUM), when it
    is at most `limit` bytes; what was done, in words ("" when nothing was to do)."""
    if engine.dialect.name != "sqlite":
        return ""
    raw = _raw(engine)
    try:
        conn = raw.driver_connection
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return ""
        size = database_size_of(conn)
        if size > limit:
            return (
                f"the database ({size / 1e6:.0f} MB) does not give freed space back: stop the"
                " daemon once and run `sqlite3 FILE 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'`"
                " (docs/retention.md)"
            )
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        return f"the database ({size / 1e6:.1f} MB) now gives freed space back (VACUUM done)"
    finally:
        raw.close()


def database_size_of(dbapi_conn: Any) -> int:
    pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
    size = dbapi_conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)


# ---------------------------------------------------------------- what status shows


@dataclass(frozen=True, slots=True)
class StoreSize:
    bytes: int  # the database's size (SQLite: its pages; PostgreSQL: pg_database_size)
    free_bytes: int  # SQLite pages free for reuse (0 on PostgreSQL)
    oldest_article: float | None  # fetched_at of the oldest stored article


def store_size(engine: Engine) -> StoreSize:
    with read_tx(engine) as conn:
        if conn.dialect.name == "sqlite":
            pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
            page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            size, free_bytes = pages * page, free * page
        else:
            size = int(
                conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            )
            free_bytes = 0
        oldest = conn.execute(select(func.min(s.articles.c.fetched_at))).scalar_one()
    return StoreSize(size, free_bytes, float(oldest) if oldest is not None else None)


__all__ = [
    "Pruned",
    "RetentionPolicy",
    "StoreSize",
    "ensure_incremental_vacuum",
    "incremental_vacuum",
    "prune",
    "store_size",
]
