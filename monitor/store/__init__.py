"""The store: feeds and their health, articles, stories, matches, alerts and the outbox.

`Store(url)` opens (and migrates) a SQLite or PostgreSQL database; its parts are repositories
named by what they own. See `schema.py` for the tables.
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection, update

from monitor.alerting import Route
from monitor.models import FeedState
from monitor.store import schema
from monitor.store.articles import ArticleRepo, CommitResult, NewArticle, RuleHit
from monitor.store.engine import (
    DEFAULT_POOL_SIZE,
    StoreError,
    make_engine,
    migrate,
    reclaim_dead_leases,
    shown_url,
    write_tx,
)
from monitor.store.feedback import Feedback, FeedbackRepo, LabelledAlert
from monitor.store.feedstate import FeedRepo, FeedSpec
from monitor.store.health import StoreHealth
from monitor.store.outbox import Delivery, Enqueue, Outbox, enqueue
from monitor.store.polls import PollCommitted, PollResult, commit_poll, poll_locks
from monitor.store.writer import GroupWriter

__all__ = [
    "ArticleRepo",
    "CommitResult",
    "Delivery",
    "Enqueue",
    "FeedRepo",
    "FeedSpec",
    "FeedState",
    "Feedback",
    "FeedbackRepo",
    "GroupWriter",
    "LabelledAlert",
    "NewArticle",
    "Outbox",
    "PollCommitted",
    "PollResult",
    "Route",
    "RuleHit",
    "Store",
    "StoreError",
    "StoreHealth",
    "commit_poll",
    "enqueue",
    "release_owned",
]


def release_owned(conn: Connection, *, owner: str) -> tuple[int, int]:
    """Give back every feed lease and delivery claim `owner` holds (a stopping daemon): the
    feeds and deliveries are due again at once, for any node. (feeds, deliveries) released."""
    counts = []
    for table in (schema.feeds, schema.deliveries):
        res = conn.execute(
            update(table)
            .where(table.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
        counts.append(int(res.rowcount))
    return counts[0], counts[1]


class Store:
    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.health = StoreHealth(shown_url(url))  # writable, read-only, full, ...
        migrate(self.engine)
        self.feeds = FeedRepo(self.engine)
        self.articles = ArticleRepo(self.engine)
        self.outbox = Outbox(self.engine)
        self.feedback = FeedbackRepo(self.engine)
        # A third of the connections for commits (the rest: leases, deliveries, console).
        self.writer = GroupWriter(self.engine, health=self.health, writers=min(3, pool_size // 3))

    def reclaim_orphaned_leases(self, host: str, now: float, *, me: str | None = None) -> int:
        """Take back feeds and deliveries leased by dead processes of this host (`me`: this
        process's own lease owner, whose leases are kept)."""
        with write_tx(self.engine) as conn:
            return sum(
                reclaim_dead_leases(conn, table, host=host, now=now, me=me)
                for table in (schema.feeds, schema.deliveries)
            )

    async def commit(self, poll: PollResult) -> PollCommitted:
        """Commit one poll (its articles, alerts, deliveries and its feed's update) through the
        group writer: one transaction shared with the polls committing meanwhile."""
        return await self.writer.run(
            functools.partial(commit_poll, poll, self.feeds, self.articles),
            locks=poll_locks(poll),
        )

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()
