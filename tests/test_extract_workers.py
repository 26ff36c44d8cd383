"""monitor.workers: parsing and extraction in killable worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.errors import FeedError
from monitor.workers import WorkerCrashed, WorkerPool, WorkerTimeout

REAL = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "feeds" / "real"


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
