"""Worker processes for the CPU-bound, untrusted-input stages: feedparser and trafilatura.

Owns the process pool and its time limits. Neither library can be interrupted from inside
Python, so a stuck parse is ended by killing its process (pebble does that and replaces the
worker); the event loop only ever awaits a future. Workers are forked by multiprocessing's
forkserver, a clean process started once (never a fork of the daemon, so no event loop,
sockets or threads are inherited) that has imported the parsers (`monitor.worker_preload`):
their code and module objects are in memory once for all workers, and a new worker costs a
fork rather than a Python start-up and its imports (bench/README.md, Extraction on).

A pebble pool that breaks stays broken: after its manager sees a worker die while no task is
running ("All workers expired", e.g. an idle worker killed by the OOM killer) or one of its
manager threads dies, every later `schedule` raises `RuntimeError('Unexpected error within the
Pool')`. A daemon runs for months, so `WorkerPool` notices that, replaces the pebble pool and
fails only the tasks that were in flight on the broken one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.errors import MonitorError
from monitor.extract import (
    TRIM_EVERY,
    Extracted,
    bound_large_allocations,
    extract_article,
    trim_heap,
)
from monitor.models import ParsedFeed
from monitor.stories import Fingerprint, StoryIndex, StoryParams

if TYPE_CHECKING:  # imported with the first pool: a pass of 304s never loads it (~30 ms)
    import multiprocessing.context

    import pebble

T = TypeVar("T")

log = logging.getLogger(__name__)

# How often a waiting task checks that its pool is still alive. A broken pool normally fails
# its in-flight futures itself, but a task queued just as it broke is never handed to a worker
# and its future would otherwise wait forever.
_HEALTH_CHECK_INTERVAL = 1.0


class WorkerTimeout(MonitorError):
    """A task ran past its time limit; its worker process was killed."""

    kind = "timeout"


class WorkerCrashed(MonitorError):
    """The worker process died while running a task (a segfault, out of memory, os._exit)."""

    kind = "crashed"


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


#: What the forkserver imports before it forks the first worker: the feed parser and the
#: worker side of pebble always (else every fork imports pebble itself: 400 extractions by
#: 20 successive workers spent 1.1 s outside their tasks, 0.9 s with it preloaded),
#: trafilatura when articles are extracted (unused, it would only add its ~10 MB to the
#: forkserver), then `monitor.worker_preload`, which freezes what they created.
PARSE_MODULES = ["monitor.feeds", "monitor.workers", "pebble.pool.process"]
EXTRACT_MODULES = ["trafilatura", "trafilatura.utils", "monitor.extract"]
#: Tasks a worker runs before it is replaced by a fresh fork. lxml's and trafilatura's heaps
#: grow with the largest pages a worker has seen and glibc keeps most of it; a fresh fork
#: starts from the forkserver's shared pages. With spawn, 1000 was the compromise (a
#: replacement was a Python start-up and the imports, ~0.3-0.5 s of CPU); a fork is cheap
#: (~25 ms of CPU outside its tasks, measured over 400 extractions), and a worker's
#: trafilatura caches are reset every `TRIM_EVERY` tasks anyway, so a fresh one loses
#: nothing: at 100 the extraction tree's peak PSS was 241-251 MB against 249-255 at 200.
MAX_TASKS_PER_CHILD = 100


def preload_modules(extraction: bool) -> list[str]:
    return PARSE_MODULES + (EXTRACT_MODULES if extraction else []) + ["monitor.worker_preload"]


def _context(extraction: bool) -> multiprocessing.context.BaseContext:
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    # Read only when the process's one forkserver starts (for its first pool); a later pool
    # asking for other modules still works, its workers import what they need themselves.
    ctx.set_forkserver_preload(preload_modules(extraction))
    return ctx


class WorkerPool:
    """A pool of `workers` processes, each replaced after `max_tasks_per_child` tasks (which
    bounds the memory that parser caches and heaps can hold). Replaces its pebble pool when
    that breaks. `extraction`: whether tasks will extract articles (trafilatura is then
    imported once, by the forkserver, rather than by every worker)."""

    def __init__(
        self,
        workers: int,
        *,
        max_tasks_per_child: int = MAX_TASKS_PER_CHILD,
        extraction: bool = True,
    ) -> None:
        self._workers = workers
        self._max_tasks = max_tasks_per_child
        self._extraction = extraction
        self._extracted = 0
        # Page bodies pass through this process (fetched, pickled to a worker): see there.
        bound_large_allocations()
        # Made on the first task: a `monitor once` where every feed answers 304 never starts
        # a worker process (a spawn and its imports cost 0.3-0.5 s of CPU each).
        self._pool: pebble.ProcessPool | None = None
        # The pebble pool whose workers are known to be started, and the start under way
        # (see `_ready`); `close` waits for a start in progress under `_starting_guard`.
        self._running: pebble.ProcessPool | None = None
        self._starting: tuple[pebble.ProcessPool, concurrent.futures.Future[None]] | None = None
        self._starting_guard = threading.Lock()
        self._closed = False
        self._reapers: list[threading.Thread] = []
        self.replacements = 0
        """How many times a broken pebble pool was replaced (for health reporting and tests)."""

    @property
    def started(self) -> bool:
        """Whether a task was ever given to the pool (and so its workers were started)."""
        return self._pool is not None

    @property
    def ready(self) -> bool:
        """Whether the pool can take work: not closed, and its pebble pool not broken. Never
        starts a worker (asking a created pebble pool whether it is `active` starts it): a
        pool not started yet, or starting, is ready."""
        if self._closed:
            return False
        pool = self._pool
        if pool is None or pool is not self._running:
            return True
        return bool(pool.active)

    def _current(self) -> pebble.ProcessPool:
        if self._pool is None:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._pool = self._new_pool()
        return self._pool

    def _new_pool(self) -> pebble.ProcessPool:
        import pebble

        return pebble.ProcessPool(
            max_workers=self._workers,
            max_tasks=self._max_tasks,
            context=_context(self._extraction),
        )

    def _replace(self, broken: pebble.ProcessPool, reason: str) -> None:
        """Swap in a fresh pebble pool if `broken` is still the current one (several tasks can
        notice the same breakage; only the first replaces it)."""
        if self._closed or broken is not self._pool:
            return
        log.error("worker pool broken (%s); starting a new one", reason)
        self._pool = self._new_pool()
        self.replacements += 1
        # Tearing the old pool down joins its threads and kills its workers, which can take a
        # moment; it must not block the event loop, and nothing waits on it but close().
        broken.stop()  # type: ignore[no-untyped-call]
        reaper = threading.Thread(target=broken.join, name="worker-pool-reaper", daemon=True)
        reaper.start()
        self._reapers = [t for t in self._reapers if t.is_alive()] + [reaper]

    async def _ready(self) -> pebble.ProcessPool:
        """The current pebble pool, its workers started.

        pebble starts a pool's workers inside its first `schedule`, and the first worker waits
        for the forkserver to start and import the parsers (~0.2-0.3 s): done on the event loop,
        that stalls every fetch in flight. It is done here in a thread, once per pebble pool;
        tasks that arrive meanwhile wait for the same start. (A thread and a concurrent future
        rather than asyncio primitives: a pool may serve more than one event loop, as in tests.)
        """
        pool = self._current()
        if pool is self._running:
            return pool
        if self._starting is None or self._starting[0] is not pool:
            started: concurrent.futures.Future[None] = concurrent.futures.Future()
            started.set_running_or_notify_cancel()  # a cancelled waiter must not cancel it
            self._starting = (pool, started)
            threading.Thread(
                target=self._start, args=(pool, started), name="worker-pool-start", daemon=True
            ).start()
        starting = self._starting
        try:
            await asyncio.wrap_future(starting[1])
        except Exception:
            if self._starting is starting:
                self._starting = None  # the next task tries again
            raise
        self._running = pool
        if self._starting is starting:
            self._starting = None  # done: `_running` says so from now on
        return pool

    def _start(self, pool: pebble.ProcessPool, started: concurrent.futures.Future[None]) -> None:
        with self._starting_guard:
            try:
                _ = pool.active  # pebble starts a created pool's workers on first use
            except BaseException as exc:  # handed to the tasks waiting for this start
                started.set_exception(exc)
            else:
                started.set_result(None)

    async def _schedule(
        self, fn: Callable[..., T], args: tuple[Any, ...], timeout: float
    ) -> tuple[pebble.ProcessPool, pebble.ProcessFuture[T]]:
        pool = await self._ready()
        try:
            return pool, pool.schedule(fn, args=args, timeout=timeout)
        except RuntimeError as exc:
            # The pool broke while idle (or earlier, unnoticed): nothing of this task has run
            # yet, so it is safe to hand it to a fresh pool. A second failure is not a breakage
            # we can repair and propagates.
            if self._closed:
                raise
            self._replace(pool, str(exc))
            pool = await self._ready()
            return pool, pool.schedule(fn, args=args, timeout=timeout)

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run `fn(*args)` in a worker; kill it after `timeout` seconds.

        `fn` and its arguments must be picklable (a module-level function). Raises
        `WorkerTimeout`, `WorkerCrashed` (also when the pool broke under the task; the pool is
        then replaced for later tasks), or whatever `fn` raised.
        """
        import pebble  # loaded by the pool `_schedule` made

        pool, future = await self._schedule(fn, args, timeout)
        waiter = asyncio.wrap_future(future)
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=_HEALTH_CHECK_INTERVAL)
                if done:
                    return waiter.result()
                if not pool.active:
                    future.cancel()  # type: ignore[no-untyped-call]
                    self._replace(pool, "a manager thread stopped")
                    raise WorkerCrashed(f"{_name(fn)}: the worker pool broke under the task")
        except concurrent.futures.TimeoutError:
            raise WorkerTimeout(f"{_name(fn)} ran past its {timeout:g} s limit") from None
        except pebble.ProcessExpired as exc:
            # One worker died running this task; pebble has already replaced it.
            raise WorkerCrashed(f"{_name(fn)}: worker process died ({exc})") from None
        except concurrent.futures.BrokenExecutor as exc:
            # The whole pool broke (pebble failed every task it held): replace it.
            self._replace(pool, f"{type(exc).__name__}: {exc}")
            raise WorkerCrashed(f"{_name(fn)}: worker process died ({exc})") from None
        except asyncio.CancelledError:
            future.cancel()  # type: ignore[no-untyped-call]  # pebble kills a started task
            raise

    async def parse_feed(
        self, body: bytes, *, url: str, content_type: str | None, timeout: float
    ) -> ParsedFeed:
        """`monitor.feeds.parse_feed` in a worker, with a time limit."""
        return await self.run(_parse_feed, body, url, content_type, timeout=timeout)

    async def parse_feed_fingerprinted(
        self,
        body: bytes,
        *,
        url: str,
        content_type: str | None,
        timeout: float,
        feed: str,
        stories: StoryParams,
    ) -> tuple[ParsedFeed, list[Fingerprint]]:
        """`parse_feed`, plus each entry's story fingerprint as an article of `feed`.

        For feeds whose articles are not extracted: their fingerprint depends on the entry
        alone, so it is computed here, on the worker's core, and the daemon's process (the
        one that must also fetch, match and commit for every feed) is spared it.
        """
        return await self.run(
            _parse_and_fingerprint, body, url, content_type, feed, stories, timeout=timeout
        )

    async def extract(self, html: bytes, *, url: str, timeout: float) -> Extracted | None:
        """`monitor.extract.extract_article` in a worker, with a time limit."""
        try:
            return await self.run(extract_article, html, url, timeout=timeout)
        finally:
            self._extracted += 1
            if self._extracted % TRIM_EVERY == 0:
                # The page bodies, pickles and article texts passing through this process
                # leave free pages in the threads' arenas (a trim: ~6 ms on a 50 MB heap).
                trim_heap()

    def close(self) -> None:
        """Stop the workers (running tasks are killed) and wait for them to exit."""
        self._closed = True
        if self._pool is not None:
            with self._starting_guard:  # a start in progress ends first
                self._pool.stop()  # type: ignore[no-untyped-call]
            self._pool.join()
        for reaper in self._reapers:
            reaper.join()


# The task functions import monitor.feeds (feedparser, lxml) when they run, i.e. in the worker:
# the daemon's own process never parses a feed and does not load either.


def _parse_feed(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    from monitor.feeds import parse_feed

    return parse_feed(body, url=url, content_type=content_type)


def _parse_and_fingerprint(
    body: bytes, url: str, content_type: str | None, feed: str, stories: StoryParams
) -> tuple[ParsedFeed, list[Fingerprint]]:
    from monitor.feeds import parse_feed

    parsed = parse_feed(body, url=url, content_type=content_type)
    index = StoryIndex.of(stories)
    return parsed, [index.fingerprint(entry.article(feed)) for entry in parsed.entries]
