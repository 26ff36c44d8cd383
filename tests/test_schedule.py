"""When a feed is polled next: the configured interval, raised to what the feed and HTTP ask
for (RSS ttl, Cache-Control max-age), moved past skipHours / skipDays, bounded by
min/max interval; exact Retry-After and capped backoff after a failure; adaptive intervals."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from monitor.schedule import (
    ADAPTIVE_WINDOW,
    Skip,
    adaptive_interval,
    next_poll_after_failure,
    next_poll_after_success,
)

MIN = 60.0
HOUR = 3600.0
MAX = 6 * HOUR
# A Wednesday, 10:30 UTC.
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC).timestamp()


def after_success(**kw: object) -> float:
    """Seconds from NOW to the next poll, without jitter."""
    args: dict[str, object] = {"interval": 600.0, "bounds": (MIN, MAX), "jitter": 0.0}
    skip_hours = kw.pop("skip_hours", frozenset())
    skip_days = kw.pop("skip_days", frozenset())
    args["skip"] = Skip(skip_hours, skip_days)  # type: ignore[arg-type]
    args.update(kw)
    return next_poll_after_success(NOW, **args) - NOW  # type: ignore[arg-type]


# --------------------------------------------------------------------------- after a success


def test_configured_interval_is_used_when_the_server_says_nothing() -> None:
    assert after_success() == 600.0


def test_interval_below_min_interval_is_raised_to_it() -> None:
    assert after_success(interval=5.0) == MIN


def test_rss_ttl_longer_than_the_interval_is_a_lower_bound() -> None:
    assert after_success(server_min=(60 * 60.0,)) == HOUR


def test_ttl_shorter_than_the_interval_does_not_poll_more_often() -> None:
    assert after_success(server_min=(120.0,)) == 600.0


def test_the_larger_of_ttl_and_max_age_wins() -> None:
    assert after_success(server_min=(1800.0, 2 * HOUR)) == 2 * HOUR
    assert after_success(server_min=(2 * HOUR, None)) == 2 * HOUR


def test_server_bounds_never_push_past_max_interval() -> None:
    assert after_success(server_min=(7 * 24 * HOUR,)) == MAX


def test_an_interval_configured_above_max_interval_is_kept() -> None:
    # max_interval bounds what servers may ask for, not what the user wrote.
    assert after_success(interval=12 * HOUR) == 12 * HOUR


def test_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(7)
    delays = [
        next_poll_after_success(NOW, interval=600, bounds=(MIN, MAX), rng=rng) - NOW
        for _ in range(500)
    ]
    assert min(delays) >= 540 and max(delays) <= 660
    assert max(delays) - min(delays) > 60  # it does spread feeds out


def test_skip_hours_move_the_poll_to_the_first_allowed_hour() -> None:
    # Due at 10:40; the feed skips 10:00-12:59 UTC: next poll at 13:00 sharp.
    when = NOW + after_success(skip_hours=frozenset({10, 11, 12}))
    assert datetime.fromtimestamp(when, UTC) == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


def test_skip_days_move_the_poll_to_the_next_allowed_day() -> None:
    when = NOW + after_success(skip_days=frozenset({"Wednesday", "Thursday"}))
    assert datetime.fromtimestamp(when, UTC) == datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def test_skip_hours_and_days_combine() -> None:
    when = NOW + after_success(skip_days=frozenset({"Wednesday"}), skip_hours=frozenset({0, 1}))
    assert datetime.fromtimestamp(when, UTC) == datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def test_skip_hours_outside_the_due_time_change_nothing() -> None:
    assert after_success(skip_hours=frozenset({3, 4})) == 600.0


def test_a_feed_that_skips_every_hour_is_ignored_as_broken_metadata() -> None:
    assert after_success(skip_hours=frozenset(range(24))) == 600.0
    days = frozenset({"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"})
    assert after_success(skip_days=days | {"Sunday"}) == 600.0


# --------------------------------------------------------------------------- after a failure


def test_retry_after_is_obeyed_exactly() -> None:
    when = next_poll_after_failure(NOW, failures=3, base=60, cap=HOUR, retry_after=120.0)
    assert when - NOW == 120.0


def test_retry_after_overrides_a_longer_backoff() -> None:
    when = next_poll_after_failure(NOW, failures=10, base=60, cap=HOUR, retry_after=5.0)
    assert when - NOW == 5.0


@pytest.mark.parametrize(("failures", "step"), [(1, 60.0), (2, 120.0), (3, 240.0), (10, HOUR)])
def test_backoff_doubles_per_failure_up_to_the_cap(failures: int, step: float) -> None:
    rng = random.Random(failures)
    delays = [
        next_poll_after_failure(
            NOW, failures=failures, base=60, cap=HOUR, retry_after=None, rng=rng
        )
        - NOW
        for _ in range(300)
    ]
    assert step / 2 <= min(delays) and max(delays) <= step
    assert max(delays) - min(delays) > step / 4  # jittered, not lockstep


# --------------------------------------------------------------------------- adaptive


def test_adaptive_polls_once_per_expected_entry() -> None:
    # 168 entries a week = one an hour.
    assert adaptive_interval(168, window=ADAPTIVE_WINDOW, min_interval=MIN, max_interval=MAX) == (
        HOUR
    )


def test_adaptive_busy_feed_is_bounded_by_min_interval() -> None:
    interval = adaptive_interval(
        100_000, window=ADAPTIVE_WINDOW, min_interval=MIN, max_interval=MAX
    )
    assert interval == MIN


def test_adaptive_quiet_feed_is_bounded_by_max_interval() -> None:
    assert adaptive_interval(3, window=ADAPTIVE_WINDOW, min_interval=MIN, max_interval=MAX) == MAX
    assert adaptive_interval(0, window=ADAPTIVE_WINDOW, min_interval=MIN, max_interval=MAX) == MAX


def test_adaptive_busier_feed_gets_a_shorter_interval() -> None:
    def interval(n: int) -> float:
        return adaptive_interval(n, window=ADAPTIVE_WINDOW, min_interval=MIN, max_interval=MAX)

    assert interval(2000) < interval(500) < interval(100)
