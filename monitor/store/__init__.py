"""The store: feeds and their health, articles, stories, matches, alerts and the outbox.

`Store(url)` opens (and migrates) a SQLite or PostgreSQL database; its parts are repositories
named by what they own. See `schema.py` for the tables.
"""

from __future__ import annotations

from monitor.store import schema
from monitor.store.articles import ArticleRepo, CommitResult, Route, RuleHit
from monitor.store.engine import StoreError, make_engine, migrate, reclaim_dead_leases, write_tx
from monitor.store.feedback import Feedback, FeedbackRepo, LabelledAlert
from monitor.store.feedstate import FeedRepo, FeedSpec, FeedState
from monitor.store.outbox import Delivery, Outbox, enqueue
from monitor.store.writer import GroupWriter

__all__ = [
    "ArticleRepo",
    "CommitResult",
    "Delivery",
    "FeedRepo",
    "FeedSpec",
    "FeedState",
    "Feedback",
    "FeedbackRepo",
    "GroupWriter",
    "LabelledAlert",
    "Outbox",
    "Route",
    "RuleHit",
    "Store",
    "StoreError",
    "enqueue",
]


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.feeds = FeedRepo(self.engine)
        self.articles = ArticleRepo(self.engine)
        self.outbox = Outbox(self.engine)
        self.feedback = FeedbackRepo(self.engine)
        self.writer = GroupWriter(self.engine)

    def reclaim_orphaned_leases(self, host: str, now: float) -> int:
        """Take back feeds and deliveries leased by dead processes of this host."""
        with write_tx(self.engine) as conn:
            return sum(
                reclaim_dead_leases(conn, table, host=host, now=now)
                for table in (schema.feeds, schema.deliveries)
            )

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()
