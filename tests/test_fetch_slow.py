"""monitor.fetch against slow servers: the slot wait is not the deadline, stalled and trickling
bodies are cut early, and slow URLs hold at most one of their host's slots.

The pure parts (`_RateWatch`, `_HostGate`) are tested on their own; the rest against real
servers on 127.0.0.1 (tests/hostile_server.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hostile_server import HostileServer, fixed, slow, stall, trickle

from monitor.config import FetchSettings
from monitor.fetch import (
    Fetcher,
    FetchTimeout,
    IdleTimeout,
    SlotWaitTimeout,
    TooSlow,
    _HostGate,
    _RateWatch,
)

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as srv:
        yield srv


def _settings(**kw: object) -> FetchSettings:
    return FetchSettings.model_validate(kw)


# --------------------------------------------------------------------------- the rate rule


def test_a_body_done_within_the_window_is_never_judged() -> None:
    watch = _RateWatch(min_rate=1000, window=10, started=0.0)
    assert [watch.add(t, 1) for t in (1.0, 5.0, 9.9)] == [None, None, None]


def test_a_steady_trickle_is_too_slow_once_the_window_has_passed() -> None:
    watch = _RateWatch(min_rate=1000, window=10, started=0.0)
    rates = [watch.add(float(t), 20) for t in range(1, 12)]
    assert rates[:9] == [None] * 9
    assert rates[9] == pytest.approx(20.0)  # 200 bytes over the 10 s window


def test_a_fast_start_then_a_trickle_is_caught_when_the_window_slides_past_it() -> None:
    watch = _RateWatch(min_rate=1000, window=10, started=0.0)
    assert watch.add(0.5, 1_000_000) is None  # a megabyte at once, then a byte a second
    rates = [watch.add(float(t), 1) for t in range(1, 13)]
    assert rates[9] is None  # at 10 s the fast start is still inside the window
    assert rates[11] is not None and rates[11] < 1000  # at 12 s it has slid out


def test_a_body_above_the_minimum_rate_passes_and_zero_means_no_minimum() -> None:
    fast = _RateWatch(min_rate=1000, window=2, started=0.0)
    assert all(fast.add(t / 10, 110) is None for t in range(1, 60))  # 1,100 bytes/s
    off = _RateWatch(min_rate=0, window=2, started=0.0)
    assert all(off.add(float(t), 1) is None for t in range(1, 60))


# --------------------------------------------------------------------------- the slow lane


async def _entered(gate: _HostGate, *, slow: bool, held: asyncio.Event) -> None:
    async with gate.slot(slow=slow):
        held.set()
        await asyncio.sleep(3600)


async def _holds(task_event: asyncio.Event) -> bool:
    try:
        await asyncio.wait_for(task_event.wait(), 0.1)
    except TimeoutError:
        return False
    return True


async def test_slow_urls_hold_at_most_one_slot_and_healthy_ones_get_the_others() -> None:
    gate = _HostGate(per_host=2, delay=0)
    gate.judge("http://h/slow-a", slow=True)
    gate.judge("http://h/slow-b", slow=True)
    events = [asyncio.Event() for _ in range(3)]
    tasks = [
        asyncio.create_task(_entered(gate, slow=gate.is_slow("http://h/slow-a"), held=events[0])),
        asyncio.create_task(_entered(gate, slow=gate.is_slow("http://h/slow-b"), held=events[1])),
        asyncio.create_task(_entered(gate, slow=gate.is_slow("http://h/ok"), held=events[2])),
    ]
    try:
        assert await _holds(events[0])
        assert not await _holds(events[1])  # the second slow URL waits for the slow lane
        assert await _holds(events[2])  # the healthy one gets the other slot at once
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_with_one_slot_per_host_slow_and_healthy_urls_share_it() -> None:
    gate = _HostGate(per_host=1, delay=0)
    held = asyncio.Event()
    task = asyncio.create_task(_entered(gate, slow=True, held=held))
    try:
        assert await _holds(held)
        assert gate.slow_lane.locked() is False  # no lane to keep back with one slot
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_quick_request_clears_the_slow_mark_and_marks_are_bounded() -> None:
    gate = _HostGate(per_host=2, delay=0)
    gate.judge("http://h/a", slow=True)
    assert gate.is_slow("http://h/a")
    gate.judge("http://h/a", slow=False)
    assert not gate.is_slow("http://h/a")
    for i in range(1000):
        gate.judge(f"http://h/{i}", slow=True)
    assert not gate.is_slow("http://h/0") and gate.is_slow("http://h/999")


# --------------------------------------------------------------------------- the deadline


async def test_the_wait_for_a_slot_does_not_count_against_the_deadline(
    server: HostileServer,
) -> None:
    server.routes["/slow"] = slow(1.2, FEED)
    server.routes["/feed"] = fixed(200, FEED)
    settings = _settings(per_host=1, deadline="2s")
    async with Fetcher(settings) as fetcher:
        started = time.monotonic()
        busy = [
            asyncio.create_task(fetcher.fetch(server.url("/slow"), allow_private=True))
            for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        result = await fetcher.fetch(server.url("/feed"), allow_private=True)
        waited = time.monotonic() - started
        await asyncio.gather(*busy)
    assert result.body == FEED
    assert waited > 2.2  # it waited longer than its whole deadline for the slot, and passed


async def test_no_slot_within_slot_wait_fails_as_slot_wait_without_a_request(
    server: HostileServer,
) -> None:
    server.routes["/stall"] = stall
    server.routes["/feed"] = fixed(200, FEED)
    settings = _settings(per_host=1, slot_wait="0.3s", idle_timeout="3s", deadline="5s")
    async with Fetcher(settings) as fetcher:
        busy = asyncio.create_task(fetcher.fetch(server.url("/stall"), allow_private=True))
        await asyncio.sleep(0.1)
        with pytest.raises(SlotWaitTimeout, match="not requested: no free slot") as info:
            await fetcher.fetch(server.url("/feed"), allow_private=True)
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
    assert info.value.kind == "slot_wait"
    assert [r.path for r in server.requests] == ["/stall"]


# --------------------------------------------------------------------------- body pace


async def test_a_stalled_body_is_cut_as_idle_long_before_the_deadline(
    server: HostileServer,
) -> None:
    server.routes["/stall"] = stall
    settings = _settings(idle_timeout="0.5s", deadline="30s", read_timeout="30s")
    async with Fetcher(settings) as fetcher:
        started = time.monotonic()
        with pytest.raises(IdleTimeout, match=r"no byte for 0\.5 s") as info:
            await fetcher.fetch(server.url("/stall"), allow_private=True)
    assert info.value.kind == "idle"
    assert time.monotonic() - started < 5


async def test_a_trickling_body_is_cut_as_slow_long_before_the_deadline(
    server: HostileServer,
) -> None:
    server.routes["/trickle"] = trickle  # a byte every 50 ms, never idle for long
    settings = _settings(idle_timeout="2s", min_rate="1KiB", rate_window="1s", deadline="30s")
    async with Fetcher(settings) as fetcher:
        started = time.monotonic()
        with pytest.raises(TooSlow, match="under the 1,024 bytes/s minimum") as info:
            await fetcher.fetch(server.url("/trickle"), allow_private=True)
    assert info.value.kind == "slow"
    assert isinstance(info.value, FetchTimeout)
    assert time.monotonic() - started < 5


async def test_a_url_cut_for_slowness_then_takes_the_slow_lane(server: HostileServer) -> None:
    server.routes["/trickle-a"] = trickle
    server.routes["/trickle-b"] = trickle
    server.routes["/feed"] = fixed(200, FEED)
    settings = _settings(per_host=2, idle_timeout="2s", rate_window="0.5s", deadline="30s")
    urls = [server.url("/trickle-a"), server.url("/trickle-b")]
    async with Fetcher(settings) as fetcher:
        first = await asyncio.gather(
            *(fetcher.fetch(u, allow_private=True) for u in urls), return_exceptions=True
        )
        assert [type(e) for e in first] == [TooSlow, TooSlow]
        server.requests.clear()
        again = [asyncio.create_task(fetcher.fetch(u, allow_private=True)) for u in urls]
        await asyncio.sleep(0.2)
        in_flight = [r.path for r in server.requests if not r.finished]
        result = await fetcher.fetch(server.url("/feed"), allow_private=True)
        await asyncio.gather(*again, return_exceptions=True)
    assert len(in_flight) == 1  # one trickler at a time: the other waits for the slow lane
    first_slow, second_slow = sorted(
        (r for r in server.requests if r.path != "/feed"), key=lambda r: r.started
    )
    (healthy,) = [r for r in server.requests if r.path == "/feed"]
    assert result.body == FEED
    assert healthy.finished < first_slow.finished  # served beside the slow one, not after it
    assert second_slow.path != first_slow.path  # the other one went once the lane was free
