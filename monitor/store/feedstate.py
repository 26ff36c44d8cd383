"""Feed state: which feeds exist, when each is due, who holds its lease, and its health.

Due feeds are leased in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several nodes can
share one database; every completion is conditional on still holding the lease. Health changes
(broken after a configured time, recovered) are queued in the outbox in the same transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
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

from monitor.models import FeedState
from monitor.polling import FeedUpdate
from monitor.store import schema as s
from monitor.store.engine import read_tx, serialise, write_tx


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


_f = s.feeds.c


@functools.cache
def _success_statement(new_entries: bool, moved: bool, redirect: str, skip: bool) -> Update:
    """`apply`'s UPDATE for one shape of good poll, built once (building and compiling it per
    poll cost more than running it). `redirect`: none | same | new."""
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
        "not_modified": c.not_modified + bindparam("v_not_modified"),
        "entries_total": c.entries_total + bindparam("v_new_entries"),
        "min_interval": bindparam("v_min_interval"),
    }
    if new_entries:
        values["last_new_entry_at"] = bindparam("v_now")
    if moved:
        values["fetch_url"] = bindparam("v_fetch_url")
    if skip:
        values["skip"] = bindparam("v_skip")
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


_FAILURE = (
    update(s.feeds)
    .where(_f.id == bindparam("b_id"), _f.lease_owner == bindparam("b_owner"))
    .values(
        consecutive_failures=_f.consecutive_failures + 1,
        failing_since=bindparam("v_failing_since"),
        last_error=bindparam("v_error"),
        last_error_kind=bindparam("v_kind"),
        next_poll_at=bindparam("v_next_poll_at"),
        lease_owner=None,
        lease_until=None,
        broken_reported=bindparam("v_broken"),
        min_interval=bindparam("v_min_interval"),
    )
)


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

    def health_counts(self) -> dict[str, int]:
        """Active feeds by health (ok, failing, broken), as /healthz and /metrics show them;
        a state no feed is in is left out.

        Two index-only queries on `ix_feeds_health` (active, consecutive_failures,
        broken_reported): the count of active feeds reads that narrow index, and the failing
        ones are a range of it. Reading every feed's row (`all`) took 150 ms at 100,000 feeds
        (bench/bench_health.py)."""
        f = s.feeds.c
        with read_tx(self.engine) as conn:
            active = conn.execute(
                select(func.count()).select_from(s.feeds).where(f.active.is_(True))
            ).scalar_one()
            failing = conn.execute(
                select(f.broken_reported, func.count())
                .where(f.active.is_(True), f.consecutive_failures > 0)
                .group_by(f.broken_reported)
            ).all()
        counts = {"broken" if broken else "failing": int(n) for broken, n in failing}
        counts["ok"] = int(active) - sum(counts.values())
        return {k: n for k, n in sorted(counts.items()) if n}

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

    @staticmethod
    def apply(
        conn: Connection, feed: FeedState, owner: str, change: FeedUpdate, stored: int
    ) -> bool:
        """Write what a poll changed (decided by `monitor.polling`) inside the caller's
        transaction, `stored` being how many of its entries were stored. Returns False if the
        lease was lost (another node took over): nothing is written then."""
        if change.failure is not None:
            res = conn.execute(
                _FAILURE,
                {
                    "b_id": feed.id,
                    "b_owner": owner,
                    "v_failing_since": change.failing_since,
                    "v_error": change.failure.error[:2000],
                    "v_kind": change.failure.kind,
                    "v_next_poll_at": change.next_poll_at,
                    "v_broken": feed.broken_reported or change.health == "source.broken",
                    "v_min_interval": change.min_interval,
                },
            )
            if res.rowcount and change.defer_host is not None:
                _defer_host(conn, change.defer_host, until=change.next_poll_at)
            return bool(res.rowcount)
        if change.redirect_target is None:
            redirect = "none"
        else:
            redirect = "same" if change.redirect_same else "new"
        statement = _success_statement(
            bool(stored), bool(change.fetch_url), redirect, change.skip_changed
        )
        res = conn.execute(
            statement,
            {
                "b_id": feed.id,
                "b_owner": owner,
                "v_etag": change.etag,
                "v_last_modified": change.last_modified,
                "v_content_hash": change.content_hash,
                "v_next_poll_at": change.next_poll_at,
                "v_now": change.now,
                "v_min_interval": change.min_interval,
                "v_new_entries": stored,
                "v_fetch_url": change.fetch_url,
                "v_redirect_target": change.redirect_target,
                "v_skip": change.skip,
                "v_not_modified": int(change.not_modified),
            },
        )
        return bool(res.rowcount)

    def release(self, feed: FeedState, owner: str, *, conn: Connection | None = None) -> None:
        """Give the feed's lease back without recording a poll (in `conn`'s transaction, or in
        one of its own)."""
        if conn is None:
            with write_tx(self.engine) as own:
                self.release(feed, owner, conn=own)
            return
        conn.execute(
            update(s.feeds)
            .where(s.feeds.c.id == feed.id, s.feeds.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )

    def poll_now(self, now: float) -> None:
        """Make every healthy active feed due now (a failing one keeps its backoff)."""
        with write_tx(self.engine) as conn:
            conn.execute(
                update(s.feeds)
                .where(s.feeds.c.active.is_(True), s.feeds.c.consecutive_failures == 0)
                .values(next_poll_at=now)
            )


def _defer_host(conn: Connection, host: str, *, until: float) -> int:
    """No feed on `host` is polled before `until` (a site-wide Retry-After)."""
    rows = conn.execute(
        select(s.feeds.c.id, s.feeds.c.fetch_url).where(
            s.feeds.c.active.is_(True), s.feeds.c.next_poll_at < until
        )
    ).all()
    ids = [r.id for r in rows if (urlsplit(r.fetch_url).hostname or "") == host]
    if ids:
        conn.execute(update(s.feeds).where(s.feeds.c.id.in_(ids)).values(next_poll_at=until))
    return len(ids)
