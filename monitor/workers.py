"""Worker processes for the CPU-bound, untrusted-input stages: feedparser and trafilatura.

Owns the process pool and its time limits. Neither library can be interrupted from inside
Python, so a stuck parse is ended by killing its process (pebble does that and replaces the
worker); the event loop only ever awaits a future. Workers are started with 'spawn' so they do
not inherit the daemon's event loop, sockets or threads through fork.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

import pebble

from monitor.errors import MonitorError
from monitor.extract import Extracted, extract_article
from monitor.feeds import ParsedFeed, parse_feed

T = TypeVar("T")


class WorkerTimeout(MonitorError):
    """A task ran past its time limit; its worker process was killed."""

    kind = "timeout"


class WorkerCrashed(MonitorError):
    """The worker process died while running a task (a segfault, out of memory, os._exit)."""

    kind = "crashed"


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


class WorkerPool:
    """A pool of `workers` processes, each replaced after `max_tasks_per_child` tasks (which
    bounds the memory that parser caches can hold)."""

    def __init__(self, workers: int, *, max_tasks_per_child: int = 200) -> None:
        self._pool = pebble.ProcessPool(
            max_workers=workers,
            max_tasks=max_tasks_per_child,
            context=multiprocessing.get_context("spawn"),
        )

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run `fn(*args)` in a worker; kill it after `timeout` seconds.

        `fn` and its arguments must be picklable (a module-level function). Raises
        `WorkerTimeout`, `WorkerCrashed`, or whatever `fn` raised.
        """
        future = self._pool.schedule(fn, args=args, timeout=timeout)
        try:
            return await asyncio.wrap_future(future)  # type: ignore[no-any-return]
        except concurrent.futures.TimeoutError:
            raise WorkerTimeout(f"{_name(fn)} ran past its {timeout:g} s limit") from None
        except (pebble.ProcessExpired, concurrent.futures.BrokenExecutor) as exc:
            raise WorkerCrashed(f"{_name(fn)}: worker process died ({exc})") from None
        except asyncio.CancelledError:
            future.cancel()  # type: ignore[no-untyped-call]  # pebble kills a started task
            raise

    async def parse_feed(
        self, body: bytes, *, url: str, content_type: str | None, timeout: float
    ) -> ParsedFeed:
        """`monitor.feeds.parse_feed` in a worker, with a time limit."""
        return await self.run(_parse_feed, body, url, content_type, timeout=timeout)

    async def extract(self, html: bytes, *, url: str, timeout: float) -> Extracted | None:
        """`monitor.extract.extract_article` in a worker, with a time limit."""
        return await self.run(extract_article, html, url, timeout=timeout)

    def close(self) -> None:
        """Stop the workers (running tasks are killed) and wait for them to exit."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join()


def _parse_feed(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    return parse_feed(body, url=url, content_type=content_type)
