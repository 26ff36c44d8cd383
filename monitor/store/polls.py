"""One poll's commit: its new articles (with stories, matches, alerts and deliveries), its
feed's update and its health deliveries, written in ONE piece of the group commit.

`Pipeline.poll` returns a `PollResult` and decides nothing here; `commit_poll` only applies it,
conditional on the poll still holding its feed's lease: a poll whose lease was lost (another
node took the feed over) writes nothing, and its entries stay new for the node that holds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from monitor.alerting import Route
from monitor.models import FeedState
from monitor.polling import FeedUpdate
from monitor.store.articles import ArticleRepo, CommitResult, NewArticle
from monitor.store.feedstate import FeedRepo
from monitor.store.outbox import Enqueue, enqueue
from monitor.store.stories import story_locks
from monitor.stories import StoryIndex


@dataclass(frozen=True, slots=True)
class Notice:
    """A delivery that is not a rule's alert (a feed broke or recovered)."""

    to: Enqueue
    payload: dict[str, Any]


@dataclass(slots=True)
class PollResult:
    """What one poll produced, ready to commit (see `commit_poll`)."""

    feed: FeedState
    owner: str
    update: FeedUpdate | None  # None: the feed left the config, only its lease is released
    articles: Sequence[NewArticle] = ()
    stories: StoryIndex | None = None
    routes: Mapping[str, Route] = field(default_factory=dict)  # rules waiting for min_sources
    notices: Sequence[Notice] = ()  # queued only if the update is applied


@dataclass(slots=True)
class PollCommitted:
    recorded: bool  # False: the lease was lost, nothing was written
    results: list[CommitResult] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(1 for r in self.results if r.article_id is not None)


def poll_locks(poll: PollResult) -> list[int]:
    """The story locks `commit_poll` decides `poll`'s articles under (`GroupWriter.run`)."""
    if poll.update is None or not poll.articles:
        return []
    return story_locks([new.fingerprint for new in poll.articles])


def commit_poll(
    poll: PollResult, feeds: FeedRepo, articles: ArticleRepo, conn: Connection
) -> PollCommitted:
    """Apply `poll` in the caller's write transaction (a `GroupWriter` piece)."""
    if poll.update is None:
        feeds.release(poll.feed, poll.owner, conn=conn)
        return PollCommitted(recorded=True)
    results: list[CommitResult] = []
    if poll.articles:
        assert poll.stories is not None
        results = articles.commit(
            poll.articles,
            feed_id=poll.feed.id,
            stories=poll.stories,
            now=poll.update.now,
            routes=poll.routes,
            conn=conn,
        )
    stored = sum(1 for r in results if r.article_id is not None)
    if not feeds.apply(conn, poll.feed, poll.owner, poll.update, stored):
        # Another node holds the feed now. Its entries are kept (each is stored once per feed
        # and GUID, so that node finds them seen); its feed state and health are that node's.
        return PollCommitted(recorded=False, results=results)
    for notice in poll.notices:
        enqueue(conn, notice.to, payload=notice.payload, now=poll.update.now)
    return PollCommitted(recorded=True, results=results)
