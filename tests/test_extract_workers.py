"""monitor.workers: parsing and extraction in killable worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from corpora import DATA

from monitor.errors import FeedError
from monitor.stories import StoryIndex
from monitor.workers import WorkerCrashed, WorkerPool, WorkerTimeout

ROOT = Path(__file__).resolve().parents[1]
REAL = DATA / "feeds" / "real"


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(2, max_tasks_per_child=50)
    yield workers
    workers.close()


async def test_a_task_past_its_time_limit_is_killed_and_the_pool_keeps_working(
    pool: WorkerPool,
) -> None:
    with pytest.raises(WorkerTimeout, match=r"past its 0\.5 s limit") as info:
        await pool.run(time.sleep, 3600, timeout=0.5)
    assert info.value.kind == "timeout"
    assert await pool.run(sum, [1, 2, 3], timeout=30) == 6


async def test_a_worker_that_dies_raises_worker_crashed_and_the_pool_keeps_working(
    pool: WorkerPool,
) -> None:
    with pytest.raises(WorkerCrashed, match="worker process died"):
        await pool.run(os._exit, 3, timeout=30)
    assert await pool.run(sum, [4, 5], timeout=30) == 9


async def test_a_feed_is_parsed_in_a_worker(pool: WorkerPool) -> None:
    body = (REAL / "theguardian-us.rss").read_bytes()
    feed = await pool.parse_feed(
        body, url="https://www.theguardian.com/us", content_type=None, timeout=30
    )
    assert feed.entries and all(e.title for e in feed.entries)


async def test_fingerprints_from_the_worker_equal_the_daemons_own(pool: WorkerPool) -> None:
    # Feeds without extraction get their story fingerprints from the parse worker; they must be
    # exactly what the daemon would compute, or grouping would change with the feed's settings.
    index = StoryIndex(window=72 * 3600)
    for name in ("theguardian-us.rss", "cloudflare-blog.rss", "daringfireball.atom"):
        body = (REAL / name).read_bytes()
        feed, prints = await pool.parse_feed_fingerprinted(
            body,
            url=f"https://feeds.example.org/{name}",
            content_type=None,
            timeout=30,
            feed="The Feed",
            stories=index.params,
        )
        assert len(prints) == len(feed.entries) > 0
        for entry, fp in zip(feed.entries, prints, strict=True):
            assert fp == index.fingerprint(entry.article("The Feed"))


async def test_a_feed_error_in_a_worker_reaches_the_caller(pool: WorkerPool) -> None:
    with pytest.raises(FeedError, match="looks like an HTML page"):
        await pool.parse_feed(
            b"<html><body>hi</body></html>",
            url="https://e.org/",
            content_type="text/html",
            timeout=30,
        )


async def test_an_article_is_extracted_in_a_worker(pool: WorkerPool) -> None:
    paragraph = "<p>" + "Storm damage closed the harbour bridge for two days. " * 20 + "</p>"
    page = f"<html><body><article><h1>Storm</h1>{paragraph}{paragraph}</article></body></html>"
    result = await pool.extract(page.encode(), url="https://e.org/storm", timeout=30)
    assert result is not None and "harbour bridge" in result.text


def _kill_all_workers(workers: WorkerPool) -> list[int]:
    # pebble does not expose its worker processes; its manager keeps them by pid.
    pids = list(workers._pool._pool_manager.worker_manager.workers)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait for pebble's manager threads, which check their workers every 0.1 s but can lag
    far behind that on a loaded CPU; a fixed sleep was too short there."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.05)


def _deaths_seen(pool: Any, pids: list[int]) -> bool:
    """Whether pebble's manager has dealt with the death of every one of `pids`: it drops a dead
    worker from its table, or stops looking when it declares the whole pool broken."""
    return not pool.active or not set(pids) & set(pool._pool_manager.worker_manager.workers)


def _started(pool: Any) -> bool:
    """Whether a worker acknowledged a task (pebble sets the task's worker id then)."""
    return any(t.worker_id for t in list(pool._pool_manager.task_manager.tasks.values()))


async def test_a_pool_broken_while_idle_is_replaced_and_later_tasks_succeed() -> None:
    workers = WorkerPool(2)
    try:
        assert await workers.run(sum, [1, 2], timeout=30) == 3
        # Idle workers killed: pebble's manager finds no task to blame, declares the whole
        # pool broken ("All workers expired") and refuses every later task. The tasks below
        # come after that: one queued before the manager noticed is failed with the pool, as
        # a task in flight is (the next test).
        broken = workers._pool
        _kill_all_workers(workers)
        await _until(lambda: not broken.active, "pebble to declare the pool broken")
        results = await asyncio.gather(*(workers.run(sum, [i, 1], timeout=30) for i in range(6)))
        assert results == [i + 1 for i in range(6)]
        assert workers.replacements == 1
    finally:
        workers.close()


async def test_a_replaced_pool_is_ready_and_asking_does_not_start_it() -> None:
    """After a replacement the new pebble pool is made but not started (its first task
    starts it): `ready` says yes without starting it, and a task then runs."""
    from pebble.pool.base_pool import PoolStatus

    workers = WorkerPool(1)
    try:
        assert await workers.run(sum, [1, 2], timeout=30) == 3
        broken = workers._pool
        assert broken is not None and workers.ready
        _kill_all_workers(workers)
        await _until(lambda: not broken.active, "pebble to declare the pool broken")
        assert not workers.ready  # the started pool is broken
        workers._replace(broken, "killed by the test")
        fresh = workers._pool
        assert fresh is not None and fresh is not broken
        assert workers.ready and workers.ready
        assert fresh._context.status == PoolStatus.CREATED  # asking started nothing
        assert await workers.run(sum, [2, 3], timeout=30) == 5
        assert workers.ready and fresh._context.status == PoolStatus.RUNNING
    finally:
        workers.close()
    assert not workers.ready


async def test_a_pool_broken_under_a_task_fails_that_task_only() -> None:
    workers = WorkerPool(2)
    try:
        assert await workers.run(sum, [1, 2], timeout=30) == 3
        in_flight = asyncio.ensure_future(workers.run(time.sleep, 60, timeout=120))
        broken = workers._pool
        await _until(lambda: _started(broken), "a worker to start the task")
        pids = _kill_all_workers(workers)
        with pytest.raises(WorkerCrashed):
            await asyncio.wait_for(in_flight, 30)
        # The killed workers may die, and be seen dead, one after another: the later tasks
        # are for a pool that has dealt with both deaths, however it did.
        await _until(lambda: _deaths_seen(broken, pids), "pebble to see both workers die")
        for _ in range(3):  # the pool may be replaced or may have replaced its workers
            results = await asyncio.gather(
                *(workers.run(sum, [i, 2], timeout=30) for i in range(4))
            )
            assert results == [i + 2 for i in range(4)]
            await asyncio.sleep(0.5)
    finally:
        workers.close()


def _modules_after(code: str) -> set[str]:
    heavy = ("feedparser", "trafilatura", "sqlalchemy", "alembic", "apprise", "numpy", "aiohttp")
    probe = f"{code}\nimport sys; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_each_process_loads_only_the_libraries_it_uses() -> None:
    """Memory: the daemon's process never parses or extracts, so it does not load feedparser
    or trafilatura (nor Alembic on a current database, see test_store, nor numpy before an
    article body needs a MinHash); a parse worker, which imports monitor.workers and runs
    `_parse_and_fingerprint` (entries have no body), loads only feedparser until it is given
    a page."""
    daemon = _modules_after("import monitor.cli, monitor.daemon")
    assert daemon == {"aiohttp", "sqlalchemy"}
    feed = REAL / "arstechnica.rss"
    worker = _modules_after(
        "from monitor.workers import _parse_and_fingerprint\n"
        "from monitor.stories import StoryIndex\n"
        f"body = open({str(feed)!r}, 'rb').read()\n"
        "parsed, prints = _parse_and_fingerprint(\n"
        "    body, 'https://example.org/feed', None, 'f', StoryIndex(window=3600).params)\n"
        "assert parsed.entries and len(prints) == len(parsed.entries)"
    )
    assert worker == {"feedparser"}
    # A body long enough for a MinHash brings numpy in, and signs it as before.
    signed = _modules_after(
        "from monitor.models import Article\n"
        "from monitor.stories import StoryIndex\n"
        "body = ' '.join('word%d' % i for i in range(200))\n"
        "a = Article(feed='f', guid='g', url='', title='t', body=body)\n"
        "fp = StoryIndex(window=3600).fingerprint(a)\n"
        "assert fp.minhash and fp.bands"
    )
    assert "numpy" in signed
