"""Feed state: which feeds exist, when each is due, who holds its lease, and its health.

Due feeds are leased in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several nodes can
share one database; every completion is conditional on still holding the lease. Health changes
(broken after a configured time, recovered) are queued in the outbox in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Update,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from monitor.store import schema as s
from monitor.store.engine import read_tx, serialise, write_tx


@dataclass(slots=True)
class FeedState:
    id: int
    url: str
    fetch_url: str
    name: str
    allow_private: bool
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    next_poll_at: float
    consecutive_failures: int
    failing_since: float | None
    last_error: str | None
    last_error_kind: str | None
    last_success_at: float | None
    last_attempt_at: float | None
    broken_reported: bool
    redirect_target: str | None
    redirect_count: int
    min_interval: float | None
    polls: int
    entries_total: int
    last_new_entry_at: float | None
    active: bool
    skip: str | None = None  # the feed's skipHours/skipDays, see `encode_skip`


def encode_skip(hours: frozenset[int], days: frozenset[str]) -> str | None:
    """`skipHours` / `skipDays` as stored: "h:0,1,2;d:saturday,sunday" (None when empty)."""
    if not hours and not days:
        return None
    h = ",".join(str(x) for x in sorted(hours))
    d = ",".join(sorted(x.lower() for x in days))
    return f"h:{h};d:{d}"[:300]


def decode_skip(value: str | None) -> tuple[frozenset[int], frozenset[str]]:
    """Inverse of `encode_skip`; anything unreadable counts as no skip hints."""
    hours: set[int] = set()
    days: set[str] = set()
    for part in (value or "").split(";"):
        kind, _, items = part.partition(":")
        for item in filter(None, items.split(",")):
            if kind == "h" and item.isdigit() and int(item) < 24:
                hours.add(int(item))
            elif kind == "d":
                days.add(item)
    return frozenset(hours), frozenset(days)


@dataclass(frozen=True, slots=True)
class _LeaseStatements:
    due: Select[tuple[int]]
    take: Update
    rows: Select[Any]


@functools.cache
def _lease_statements(dialect: str) -> _LeaseStatements:
    """`lease_due_in`'s statements, built once per dialect: building them on every lease cost
    more than running them (the lease runs on the writer thread, between commits)."""
    now: BindParameter[float] = bindparam("now")
    ids: BindParameter[list[int]] = bindparam("ids", expanding=True)
    due = (
        select(s.feeds.c.id)
        .where(
            s.feeds.c.active.is_(True),
            s.feeds.c.paused.is_(False),  # paused from the console
            s.feeds.c.next_poll_at <= now,
            or_(s.feeds.c.lease_until.is_(None), s.feeds.c.lease_until < now),
        )
        .order_by(s.feeds.c.next_poll_at, s.feeds.c.id)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return _LeaseStatements(
        due=due,
        take=update(s.feeds)
        .where(s.feeds.c.id.in_(ids))
        .values(
            lease_owner=bindparam("owner"), lease_until=bindparam("until"), last_attempt_at=now
        ),
        rows=select(s.feeds).where(s.feeds.c.id.in_(ids)).order_by(s.feeds.c.next_poll_at),
    )


def _state(r: Any) -> FeedState:
    return FeedState(**{f: getattr(r, f) for f in FeedState.__slots__})


@dataclass(slots=True)
class FeedSpec:
    url: str
    name: str
    allow_private: bool


@dataclass(slots=True)
class QuietSuccess:
    """A good poll that stored nothing, moved nothing and changed no health state: all it
    leaves is validators, the next poll time and counters. Losing it (a crash before
    `record_successes`) is harmless: the lease expires, the feed is polled again and finds
    nothing new, so no entry is lost and no alert repeated."""

    feed_id: int
    owner: str
    now: float
    next_poll_at: float
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    min_interval: float | None
    redirect_target: str | None  # a permanent redirect seen (not yet followed), or None
    redirect_same: bool  # the same redirect as last time (its count goes up)


_f = s.feeds.c


# `record_success` for a QuietSuccess, as one statement for executemany. The redirect count
# is reset (keep 0, add 0), incremented (keep 1, add 1) or started (keep 0, add 1).
@functools.cache
def _success_statement(new_entries: bool, moved: bool, redirect: str) -> Update:
    """`record_success_in`'s UPDATE for one shape of poll, built once (building and compiling
    it per poll cost more than running it). `redirect`: none | same | new."""
    c = s.feeds.c
    values: dict[str, Any] = {
        "etag": bindparam("v_etag"),
        "last_modified": bindparam("v_last_modified"),
        "content_hash": bindparam("v_content_hash"),
        "next_poll_at": bindparam("v_next_poll_at"),
        "last_success_at": bindparam("v_now"),
        "consecutive_failures": 0,
        "failing_since": None,
        "last_error": None,
        "last_error_kind": None,
        "broken_reported": False,
        "lease_owner": None,
        "lease_until": None,
        "polls": c.polls + 1,
        "entries_total": c.entries_total + bindparam("v_new_entries"),
        "min_interval": bindparam("v_min_interval"),
    }
    if new_entries:
        values["last_new_entry_at"] = bindparam("v_now")
    if moved:
        values["fetch_url"] = bindparam("v_fetch_url")
    if redirect == "none":
        values.update(redirect_target=None, redirect_count=0)
    elif redirect == "same":
        values["redirect_count"] = c.redirect_count + 1
    else:
        values.update(redirect_target=bindparam("v_redirect_target"), redirect_count=1)
    return (
        update(s.feeds)
        .where(c.id == bindparam("b_id"), c.lease_owner == bindparam("b_owner"))
        .values(**values)
    )


_QUIET_SUCCESS = (
    update(s.feeds)
    .where(_f.id == bindparam("b_id"), _f.lease_owner == bindparam("b_owner"))
    .values(
        etag=bindparam("etag"),
        last_modified=bindparam("last_modified"),
        content_hash=bindparam("content_hash"),
        next_poll_at=bindparam("next_poll_at"),
        last_success_at=bindparam("last_success_at"),
        consecutive_failures=0,
        failing_since=None,
        last_error=None,
        last_error_kind=None,
        broken_reported=False,
        lease_owner=None,
        lease_until=None,
        polls=_f.polls + 1,
        min_interval=bindparam("min_interval"),
        redirect_target=bindparam("redirect_target"),
        redirect_count=_f.redirect_count * bindparam("b_keep") + bindparam("b_add"),
    )
)

#: Called inside the health transaction: (conn, feed, event kind) queues health deliveries.
HealthHook = Callable[[Connection, FeedState, str], None]


class FeedRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def sync(self, specs: Sequence[FeedSpec], now: float) -> None:
        """Make the feeds table match the config: add new feeds (due now), deactivate removed."""
        wanted = {f.url: f for f in specs}
        with write_tx(self.engine) as conn:
            serialise(conn, "feeds")
            existing = {
                r.url: r
                for r in conn.execute(
                    select(
                        s.feeds.c.id,
                        s.feeds.c.url,
                        s.feeds.c.name,
                        s.feeds.c.active,
                        s.feeds.c.allow_private,
                    )
                )
            }
            for url, spec in wanted.items():
                row = existing.get(url)
                if row is None:
                    conn.execute(
                        insert(s.feeds).values(
                            url=url,
                            fetch_url=url,
                            name=spec.name,
                            active=True,
                            allow_private=spec.allow_private,
                            next_poll_at=now,
                            created_at=now,
                            consecutive_failures=0,
                            broken_reported=False,
                            redirect_count=0,
                            polls=0,
                            entries_total=0,
                        )
                    )
                elif (row.name, row.active, row.allow_private) != (
                    spec.name,
                    True,
                    spec.allow_private,
                ):
                    conn.execute(
                        update(s.feeds)
                        .where(s.feeds.c.id == row.id)
                        .values(name=spec.name, active=True, allow_private=spec.allow_private)
                    )
            gone = [r.id for url, r in existing.items() if url not in wanted and r.active]
            if gone:
                conn.execute(update(s.feeds).where(s.feeds.c.id.in_(gone)).values(active=False))

    def lease_due(self, owner: str, *, limit: int, lease: float, now: float) -> list[FeedState]:
        """Lease up to `limit` due feeds, most overdue first."""
        with write_tx(self.engine) as conn:
            return self.lease_due_in(conn, owner, limit=limit, lease=lease, now=now)

    def lease_due_in(
        self, conn: Connection, owner: str, *, limit: int, lease: float, now: float
    ) -> list[FeedState]:
        """`lease_due` inside the caller's write transaction (e.g. `GroupWriter`'s)."""
        q = _lease_statements(conn.dialect.name)
        ids = list(conn.execute(q.due, {"now": now, "limit": limit}).scalars())
        if not ids:
            return []
        conn.execute(q.take, {"ids": ids, "owner": owner, "until": now + lease, "now": now})
        return [_state(r) for r in conn.execute(q.rows, {"ids": ids})]

    def get(self, url: str) -> FeedState | None:
        with read_tx(self.engine) as conn:
            r = conn.execute(select(s.feeds).where(s.feeds.c.url == url)).first()
            return _state(r) if r else None

    def all(self) -> list[FeedState]:
        with read_tx(self.engine) as conn:
            return [_state(r) for r in conn.execute(select(s.feeds).order_by(s.feeds.c.id))]

    def recent_entries(self, feed_id: int, since: float) -> int:
        """How many of the feed's stored entries were published (or, undated, first seen) at or
        after `since`: the feed's recent rate, for adaptive polling."""
        when = func.coalesce(s.articles.c.published, s.articles.c.fetched_at)
        with read_tx(self.engine) as conn:
            count = conn.execute(
                select(func.count())
                .select_from(s.articles)
                .where(s.articles.c.feed_id == feed_id, when >= since)
            ).scalar_one()
        return int(count)

    def record_success(
        self,
        feed: FeedState,
        owner: str,
        *,
        now: float,
        next_poll_at: float,
        etag: str | None,
        last_modified: str | None,
        content_hash: str | None,
        new_entries: int,
        fetch_url: str | None = None,
        redirect_target: str | None = None,
        min_interval: float | None = None,
        on_health: HealthHook | None = None,
    ) -> bool:
        """Record a good poll. Returns False if the lease was lost (another node took over)."""
        with write_tx(self.engine) as conn:
            return self.record_success_in(
                conn,
                feed,
                owner,
                now=now,
                next_poll_at=next_poll_at,
                etag=etag,
                last_modified=last_modified,
                content_hash=content_hash,
                new_entries=new_entries,
                fetch_url=fetch_url,
                redirect_target=redirect_target,
                min_interval=min_interval,
                on_health=on_health,
            )

    @staticmethod
    def record_success_in(
        conn: Connection,
        feed: FeedState,
        owner: str,
        *,
        now: float,
        next_poll_at: float,
        etag: str | None,
        last_modified: str | None,
        content_hash: str | None,
        new_entries: int,
        fetch_url: str | None = None,
        redirect_target: str | None = None,
        min_interval: float | None = None,
        on_health: HealthHook | None = None,
    ) -> bool:
        """`record_success` inside the caller's write transaction: a poll that stored entries
        records itself in the same transaction as its entries (one commit and fsync per poll)."""
        if redirect_target is None:
            redirect = "none"
        elif redirect_target == feed.redirect_target:
            redirect = "same"
        else:
            redirect = "new"
        res = conn.execute(
            _success_statement(bool(new_entries), bool(fetch_url), redirect),
            {
                "b_id": feed.id,
                "b_owner": owner,
                "v_etag": etag,
                "v_last_modified": last_modified,
                "v_content_hash": content_hash,
                "v_next_poll_at": next_poll_at,
                "v_now": now,
                "v_min_interval": min_interval,
                "v_new_entries": new_entries,
                "v_fetch_url": fetch_url,
                "v_redirect_target": redirect_target,
            },
        )
        if not res.rowcount:
            return False
        if feed.broken_reported and on_health is not None:
            on_health(conn, feed, "source.recovered")
        return True

    def record_successes(self, polls: Sequence[QuietSuccess]) -> int:
        """`record_success` for many polls that found nothing new, in ONE transaction.

        Returns how many were recorded (a poll whose lease was lost is skipped, as in
        `record_success`). Only polls without new entries, a feed move or a health change may
        come here (see `QuietSuccess`).
        """
        if not polls:
            return 0
        with write_tx(self.engine) as conn:
            return self.record_successes_in(conn, polls)

    @staticmethod
    def record_successes_in(conn: Connection, polls: Sequence[QuietSuccess]) -> int:
        """`record_successes` inside the caller's write transaction (e.g. `GroupWriter`'s)."""
        if not polls:
            return 0
        rows = [
            {
                "b_id": p.feed_id,
                "b_owner": p.owner,
                "etag": p.etag,
                "last_modified": p.last_modified,
                "content_hash": p.content_hash,
                "next_poll_at": p.next_poll_at,
                "last_success_at": p.now,
                "min_interval": p.min_interval,
                "redirect_target": p.redirect_target,
                "b_keep": 1 if p.redirect_same else 0,
                "b_add": 0 if p.redirect_target is None else 1,
            }
            for p in polls
        ]
        return int(conn.execute(_QUIET_SUCCESS, rows).rowcount)

    def record_failure(
        self,
        feed: FeedState,
        owner: str,
        *,
        now: float,
        next_poll_at: float,
        kind: str,
        error: str,
        broken_after: float,
        on_health: HealthHook | None = None,
        min_interval: float | None = None,
    ) -> bool:
        """Record a failed poll; report the feed broken once it has failed for `broken_after`."""
        failing_since = feed.failing_since if feed.failing_since is not None else now
        broken = (not feed.broken_reported) and now - failing_since >= broken_after
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(s.feeds)
                .where(s.feeds.c.id == feed.id, s.feeds.c.lease_owner == owner)
                .values(
                    consecutive_failures=s.feeds.c.consecutive_failures + 1,
                    failing_since=failing_since,
                    last_error=error[:2000],
                    last_error_kind=kind,
                    next_poll_at=next_poll_at,
                    lease_owner=None,
                    lease_until=None,
                    broken_reported=feed.broken_reported or broken,
                    min_interval=min_interval if min_interval is not None else feed.min_interval,
                )
            )
            if not res.rowcount:
                return False
            if broken and on_health is not None:
                feed.failing_since, feed.last_error, feed.last_error_kind = (
                    failing_since,
                    error,
                    kind,
                )
                on_health(conn, feed, "source.broken")
            return True

    def release(self, feed: FeedState, owner: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(
                update(s.feeds)
                .where(s.feeds.c.id == feed.id, s.feeds.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def set_skip(self, feed_id: int, skip: str | None) -> None:
        """Remember the feed's skipHours/skipDays (written only when they change)."""
        with write_tx(self.engine) as conn:
            conn.execute(update(s.feeds).where(s.feeds.c.id == feed_id).values(skip=skip))

    def defer_host(self, host: str, *, until: float) -> int:
        """No feed on `host` is polled before `until` (a site-wide Retry-After)."""
        with write_tx(self.engine) as conn:
            rows = conn.execute(
                select(s.feeds.c.id, s.feeds.c.fetch_url).where(
                    s.feeds.c.active.is_(True), s.feeds.c.next_poll_at < until
                )
            ).all()
            ids = [r.id for r in rows if (urlsplit(r.fetch_url).hostname or "") == host]
            if ids:
                conn.execute(
                    update(s.feeds).where(s.feeds.c.id.in_(ids)).values(next_poll_at=until)
                )
            return len(ids)

    def poll_now(self, now: float) -> None:
        """Make every healthy active feed due now (a failing one keeps its backoff)."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(s.feeds)
                .where(s.feeds.c.active.is_(True), s.feeds.c.consecutive_failures == 0)
                .values(next_poll_at=now)
            )
