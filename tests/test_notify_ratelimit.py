"""TokenBucket: bursts, refill, waiting, and Retry-After pauses."""

from __future__ import annotations

import time

import pytest

from monitor.notify import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_allows_a_burst_then_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 60, clock=clock)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() == pytest.approx(20.0)


def test_refills_at_rate_per_period() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 1.0, clock=clock)
    assert bucket.try_acquire() == 0.0
    clock.now += 0.4
    assert bucket.try_acquire() == pytest.approx(0.6)
    clock.now += 0.6
    assert bucket.try_acquire() == 0.0


def test_a_refused_try_takes_no_token() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 1.0, clock=clock)
    bucket.try_acquire()
    for _ in range(5):
        assert bucket.try_acquire() > 0
    clock.now += 1.0
    assert bucket.try_acquire() == 0.0


def test_never_holds_more_than_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 1.0, clock=clock)
    clock.now += 3600
    assert [bucket.try_acquire() == 0.0 for _ in range(3)] == [True, True, False]


def test_defer_blocks_for_the_given_time() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    bucket.defer(7)
    assert bucket.try_acquire() == pytest.approx(7)
    clock.now += 7
    assert bucket.try_acquire() == 0.0


def test_from_spec_reads_config_rates() -> None:
    bucket = TokenBucket.from_spec("30/min")
    assert (bucket.rate, bucket.per, bucket.capacity) == (30, 60, 30)


async def test_acquire_waits_for_the_next_token() -> None:
    bucket = TokenBucket(1, 0.2)
    await bucket.acquire()
    started = time.monotonic()
    await bucket.acquire()
    assert 0.15 <= time.monotonic() - started < 0.5
