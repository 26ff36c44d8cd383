"""The store: feeds and their health, articles, stories, matches, alerts and the outbox.

`Store(url)` opens (and migrates) a SQLite or PostgreSQL database; its parts are repositories
named by what they own. See `schema.py` for the tables.
"""

from __future__ import annotations

from monitor.store.articles import ArticleRepo, CommitResult, Route, RuleHit
from monitor.store.engine import StoreError, make_engine, migrate
from monitor.store.feedstate import FeedRepo, FeedSpec, FeedState
from monitor.store.outbox import Delivery, Outbox, enqueue

__all__ = [
    "ArticleRepo",
    "CommitResult",
    "Delivery",
    "FeedRepo",
    "FeedSpec",
    "FeedState",
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

    def close(self) -> None:
        self.engine.dispose()
