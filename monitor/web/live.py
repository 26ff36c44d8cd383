"""The live timeline: one poller of the store for every open tab.

Each open `/alerts` tab holds a server-sent event stream (`/events`). Rather than each stream
querying the store once a second, one task per console (`AlertFeed`) does, while at least one
stream is open, and hands every new alert to each stream's queue. So ten tabs cost the store
what one does, and none when no tab is open. A stream that reconnects (`Last-Event-ID`) first
gets what it missed (up to `BACKLOG` alerts) from one query of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.store.console import AlertFilter

if TYPE_CHECKING:
    from monitor.store.console import ConsoleRepo

log = logging.getLogger("monitor.web")

#: Seconds between the shared poller's looks at the store.
EVERY = 1.0
#: Alerts a reconnecting stream may catch up on; per poll, alerts read at most.
BACKLOG = 200
#: Alerts queued for a stream that does not read them before it is dropped (it reconnects).
QUEUE = 1000

Row = dict[str, Any]


class AlertFeed:
    def __init__(
        self, repo: Callable[[], ConsoleRepo], stopping: asyncio.Event, every: float = EVERY
    ) -> None:
        self.repo = repo
        self.stopping = stopping
        self.every = every
        self.queues: set[asyncio.Queue[Row | None]] = set()
        self.last = 0
        self.polls = 0  # store queries made by the poller (the tests count them)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def subscribe(self) -> asyncio.Queue[Row | None]:
        """A queue that gets every alert newer than the poller's position (None: the end)."""
        queue: asyncio.Queue[Row | None] = asyncio.Queue(QUEUE)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self.last = await asyncio.to_thread(self.repo().latest_alert_id)
            self._loop = loop
            self._task = asyncio.create_task(self._run(), name="monitor-web-live")
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Row | None]) -> None:
        self.queues.discard(queue)

    async def backlog(self, after: int, until: int) -> list[Row]:
        """Alerts with after < id <= until, oldest first (a reconnecting stream's gap)."""
        if after >= until:
            return []
        rows = await asyncio.to_thread(
            self.repo().alerts, AlertFilter(after=after, before=until + 1, limit=BACKLOG)
        )
        return list(reversed(rows))

    async def _run(self) -> None:
        try:
            while self.queues and not self.stopping.is_set():
                await self._poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.every)
        except Exception as exc:  # a store error: the streams end, browsers reconnect
            log.warning("live timeline: %s: %s", type(exc).__name__, exc)
        finally:
            for queue in list(self.queues):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def _poll(self) -> None:
        self.polls += 1
        rows = await asyncio.to_thread(
            self.repo().alerts, AlertFilter(after=self.last, limit=BACKLOG, oldest_first=True)
        )
        for row in rows:
            self.last = max(self.last, int(row["id"]))
            for queue in list(self.queues):
                try:
                    queue.put_nowait(row)
                except asyncio.QueueFull:  # a stream that stopped reading: end it
                    self.queues.discard(queue)
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(None)
