"""The store: feeds and their health, articles, stories, matches, alerts and the outbox.

`Store(url)` opens (and migrates) a SQLite or PostgreSQL database; its parts are repositories
named by what they own. See `schema.py` for the tables.
"""

from __future__ import annotations

import functools

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
    write_tx,
)
from monitor.store.feedback import Feedback, FeedbackRepo, LabelledAlert
from monitor.store.feedstate import FeedRepo, FeedSpec
from monitor.store.outbox import Delivery, Enqueue, Outbox, enqueue
from monitor.store.polls import PollCommitted, PollResult, commit_poll
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
    "commit_poll",
    "enqueue",
]


class Store:
    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        migrate(self.engine)
        self.feeds = FeedRepo(self.engine)
        self.articles = ArticleRepo(self.engine)
        self.outbox = Outbox(self.engine)
        self.feedback = FeedbackRepo(self.engine)
        self.writer = GroupWriter(self.engine)

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
            functools.partial(commit_poll, poll, self.feeds, self.articles)
        )

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()
