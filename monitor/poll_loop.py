"""The poll loop: lease due feeds, poll them, commit each poll, until nothing is due.

A sliding window rather than batch after batch: a slow feed holds one slot, not a whole batch,
and no more feeds are leased than are being polled (a lease never expires while its feed waits
in a queue). A poll that has only its commit left (queued for the group writer, see
`GroupWriter`) gives its slot to the next feed, up to twice the window in all: otherwise the
window fills with polls waiting for one commit while the parse workers idle.

`monitor once` runs it bare and gets the outcomes. The daemon keeps one loop running while
feeds come due: `recheck` seconds after the last lease that found nothing it looks again (even
with polls in flight), `on_outcome` takes each outcome (nothing is kept), a lease that fails is
retried after `recheck` seconds instead of raised, and setting `stop` ends the leasing (the
polls in flight finish; cancelling the run cancels them).

A store condition (the disk is full, the database read-only or down: `monitor.store.health`)
is never a feed's failure. A poll it cut short (outcome `deferred`) keeps its feed here, and
the loop gives the leases back as soon as the store accepts writes again, retrying with a
short backoff (`RELEASE_BACKOFF`): the feeds are due again at once instead of a whole lease
later. A lease that fails that way is retried on the same backoff, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection

from monitor.models import FeedState
from monitor.pipeline import Pipeline, PollOutcome
from monitor.store import Store
from monitor.store.health import classify

log = logging.getLogger("monitor.poll_loop")

#: Seconds between two tries to give back the leases of polls a store fault cut short:
#: doubling from the first to the last.
RELEASE_BACKOFF = (0.25, 2.0)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    owner: str  # this node's lease owner
    window: int  # polls fetching at once (fetch.concurrency)
    batch: int  # most feeds leased at once (daemon.feed_batch)
    lease: float  # seconds a feed's lease lasts
    recheck: float | None = None  # daemon: look for due feeds again after this many seconds
    held: set[int] | None = None  # ids of the feeds in flight, renewed by the heartbeat


@dataclass(slots=True)
class LoopState:
    """Everything the loop knows between two steps."""

    polls: set[asyncio.Task[PollOutcome]] = field(default_factory=set)  # fetching or committing
    committing: int = 0  # of `polls`, those that have only their commit left
    finished: list[asyncio.Task[PollOutcome]] = field(default_factory=list)
    outcomes: list[PollOutcome] = field(default_factory=list)  # kept without `on_outcome`
    next_lease: float = 0.0  # monotonic time before which leasing waits (nothing was due)
    lease_error: Exception | None = None  # raised once the polls in flight are done
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Feeds whose poll a store fault cut short, by id: (feed, monotonic end of its lease).
    held: dict[int, tuple[FeedState, float]] = field(default_factory=dict)
    release_at: float = 0.0  # monotonic time of the next try to give them back
    release_delay: float = RELEASE_BACKOFF[0]

    @property
    def fetching(self) -> int:
        return len(self.polls) - self.committing

    def room(self, window: int) -> int:
        return min(window - self.fetching, 2 * window - len(self.polls))


class PollLoop:
    def __init__(self, pipeline: Pipeline, store: Store, config: LoopConfig) -> None:
        self.pipeline = pipeline
        self.store = store
        self.config = config
        # Leased in batches of at least `refill` (each lease is a write with its fsync): one
        # per finished poll cost more than the polls of 304s.
        self.refill = max(1, min(config.window, config.batch) // 2)
        self.state = LoopState()

    async def run(
        self,
        *,
        stop: asyncio.Event | None = None,
        on_outcome: Callable[[PollOutcome], object] | None = None,
    ) -> list[PollOutcome]:
        """Poll every due feed until none is due (or `stop` is set); the outcomes, unless
        `on_outcome` took them."""
        st = self.state
        try:
            while True:
                self._collect(on_outcome)
                if st.held and time.monotonic() >= st.release_at:
                    await self._release_held()
                stopping = stop is not None and stop.is_set()
                if not stopping and self._may_lease() and await self._lease():
                    continue  # more may be due: fill the window first
                if not st.polls and not st.finished and (not st.held or stopping):  # all done
                    if st.lease_error is not None:
                        raise st.lease_error
                    return st.outcomes  # the daemon's next tick runs another loop
                await self._wait(stopping)
        finally:
            for task in st.polls:
                task.cancel()
            if st.polls:
                await asyncio.gather(*st.polls, return_exceptions=True)

    def _collect(self, on_outcome: Callable[[PollOutcome], object] | None) -> None:
        for task in self.state.finished:
            if task.cancelled():
                continue
            if (exc := task.exception()) is not None:  # Pipeline.poll/commit catch errors
                log.error("a poll failed unexpectedly", exc_info=exc)
            elif on_outcome is not None:
                on_outcome(task.result())
            else:
                self.state.outcomes.append(task.result())
        self.state.finished.clear()

    def _may_lease(self) -> bool:
        st = self.state
        room = st.room(self.config.window)
        return (
            st.lease_error is None
            and time.monotonic() >= st.next_lease
            and room > 0
            and (room >= self.refill or not st.polls)
        )

    async def _lease(self) -> bool:
        """Lease what fits in the window and start polling it; whether any feed was leased."""
        cfg, st = self.config, self.state
        limit = min(st.room(cfg.window), cfg.batch)
        try:
            feeds = await self.store.writer.run(
                functools.partial(
                    self.store.feeds.lease_due_in,
                    owner=cfg.owner,
                    limit=limit,
                    lease=cfg.lease,
                    now=time.time(),
                )
            )
        except Exception as exc:
            if cfg.recheck is None:
                st.lease_error = exc
            elif classify(exc) is not None:  # the store's condition, logged by its health
                st.next_lease = time.monotonic() + min(cfg.recheck, RELEASE_BACKOFF[1])
            else:
                log.exception("could not lease due feeds (retrying in %g s)", cfg.recheck)
                st.next_lease = time.monotonic() + cfg.recheck
            return False
        if len(feeds) < limit:  # nothing more is due now
            wait = float("inf") if cfg.recheck is None else cfg.recheck
            st.next_lease = time.monotonic() + wait
        for feed in feeds:
            task = asyncio.create_task(self._poll(feed))
            st.polls.add(task)
            task.add_done_callback(self._done)
        return bool(feeds)

    async def _poll(self, feed: FeedState) -> PollOutcome:
        held = self.config.held if self.config.held is not None else set()
        held.add(feed.id)
        try:
            polled = await self.pipeline.poll(feed, self.config.owner)
            # Only the commit is left: the slot goes to the next feed meanwhile.
            self.state.committing += 1
            self.state.wake.set()
            try:
                outcome = await self.pipeline.commit(polled)
            finally:
                self.state.committing -= 1
        finally:
            held.discard(feed.id)
        if outcome.status == "deferred":  # a store fault: give the lease back once it clears
            self._hold(feed)
        return outcome

    def _hold(self, feed: FeedState) -> None:
        st = self.state
        if not st.held:
            st.release_at = time.monotonic() + st.release_delay
        st.held[feed.id] = (feed, time.monotonic() + self.config.lease)

    async def _release_held(self) -> None:
        """Give back the leases of the held feeds, all in one write; on a store fault, try
        again after a doubled delay (a lease that has expired meanwhile is simply dropped)."""
        st, now = self.state, time.monotonic()
        for fid in [fid for fid, (_f, until) in st.held.items() if until <= now]:
            del st.held[fid]  # its lease expired: the feed is due for any node again
        if not st.held:
            return
        feeds = [f for f, _until in st.held.values()]
        owner = self.config.owner

        def release(conn: Connection) -> None:
            for feed in feeds:
                self.store.feeds.release(feed, owner, conn=conn)

        try:
            await self.store.writer.run(release)
        except Exception as exc:
            if classify(exc) is None:
                log.exception("could not give back %d leases", len(feeds))
            st.release_delay = min(st.release_delay * 2, RELEASE_BACKOFF[1])
            st.release_at = time.monotonic() + st.release_delay
            return
        log.info("gave back %d feeds a store fault had held; they are due again", len(feeds))
        for feed in feeds:
            st.held.pop(feed.id, None)
        st.release_delay = RELEASE_BACKOFF[0]
        st.next_lease = 0.0  # they are due: lease them now, not at the next look

    def _done(self, task: asyncio.Task[PollOutcome]) -> None:
        self.state.polls.discard(task)
        self.state.finished.append(task)
        self.state.wake.set()

    async def _wait(self, stopping: bool) -> None:
        """Until a poll finishes or reaches its commit, or leasing may look again."""
        st = self.state
        st.wake.clear()
        if st.finished:
            return
        timeout = None
        now = time.monotonic()
        if self.config.recheck is not None and not stopping and st.next_lease > now:
            timeout = st.next_lease - now  # leasing waits for time, not for room
        if st.held:  # the next try to give leases back
            wait = max(0.0, st.release_at - now)
            timeout = wait if timeout is None else min(timeout, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.wake.wait(), timeout)
