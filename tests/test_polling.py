"""What one poll changes about its feed (`monitor.polling`): pure decisions, no store, no server.

As Miniflux's `internal/model/feed_test.go` does for its feed model: a snapshot of the feed
in, one `FeedUpdate` out. The end-to-end versions (real Runtime, loopback server) are kept in
test_poll_schedule.py for ttl, 304, redirects and Retry-After scope.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.models import FeedState, ParsedFeed
from monitor.pipeline import poll_policy
from monitor.polling import (
    MOVE_AFTER_REDIRECTS,
    Failure,
    FeedHints,
    FetchSummary,
    PollPolicy,
    decode_skip,
    encode_skip,
    plan_after_failure,
    plan_next_poll,
)
from monitor.schedule import ADAPTIVE_WINDOW, Skip

HOUR = 3600.0
# A Wednesday, 10:30 UTC.
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC).timestamp()
POLICY = PollPolicy(
    interval=600.0,
    min_interval=60.0,
    max_interval=6 * HOUR,
    adaptive=False,
    backoff_base=60.0,
    backoff_max=6 * HOUR,
    broken_after=HOUR,
)
CHANGED = FetchSummary(changed=True, etag='"v2"', last_modified="Wed", content_hash="h2")
NOT_MODIFIED = FetchSummary(changed=False)


def feed(**kw: object) -> FeedState:
    state = FeedState(
        id=1,
        url="https://news.example/feed",
        fetch_url="https://news.example/feed",
        name="News",
        allow_private=False,
        etag='"v1"',
        last_modified="Tue",
        content_hash="h1",
        next_poll_at=NOW,
        consecutive_failures=0,
        failing_since=None,
        last_error=None,
        last_error_kind=None,
        last_success_at=NOW - 600,
        last_attempt_at=NOW,
        broken_reported=False,
        redirect_target=None,
        redirect_count=0,
        min_interval=None,
        polls=3,
        entries_total=10,
        last_new_entry_at=None,
        active=True,
    )
    return dataclasses.replace(state, **kw)  # type: ignore[arg-type]


def delay(update: object, now: float = NOW) -> float:
    return update.next_poll_at - now  # type: ignore[attr-defined, no-any-return]


# --------------------------------------------------------------------------- a good poll


def test_a_changed_feed_stores_the_new_validators() -> None:
    update = plan_next_poll(feed(), CHANGED, FeedHints(), POLICY, NOW)
    assert (update.etag, update.last_modified, update.content_hash) == ('"v2"', "Wed", "h2")
    assert update.ok and update.health is None and update.fetch_url is None


def test_a_304_keeps_the_stored_validators_it_did_not_resend() -> None:
    update = plan_next_poll(feed(), NOT_MODIFIED, FeedHints(), POLICY, NOW)
    assert (update.etag, update.last_modified, update.content_hash) == ('"v1"', "Tue", "h1")


def test_the_next_poll_is_the_interval_with_jitter() -> None:
    update = plan_next_poll(feed(), CHANGED, FeedHints(), POLICY, NOW, rng=random.Random(1))
    assert 540 <= delay(update) <= 660


def test_ttl_and_max_age_raise_the_interval_and_are_remembered() -> None:
    hints = FeedHints(ttl=2 * HOUR, cache_max_age=1800.0)
    update = plan_next_poll(feed(), CHANGED, hints, POLICY, NOW)
    assert update.min_interval == 2 * HOUR
    assert delay(update) == pytest.approx(2 * HOUR, rel=0.11)


def test_a_304_keeps_the_stored_server_bound() -> None:
    update = plan_next_poll(feed(min_interval=2 * HOUR), NOT_MODIFIED, FeedHints(), POLICY, NOW)
    assert update.min_interval == 2 * HOUR
    assert delay(update) == pytest.approx(2 * HOUR, rel=0.11)


def test_a_new_body_without_ttl_drops_the_old_bound() -> None:
    update = plan_next_poll(feed(min_interval=2 * HOUR), CHANGED, FeedHints(), POLICY, NOW)
    assert update.min_interval is None
    assert delay(update) == pytest.approx(600, rel=0.11)


def test_new_skip_hints_are_stored_and_applied() -> None:
    hints = FeedHints(skip=Skip(frozenset({10, 11, 12}), frozenset()))
    update = plan_next_poll(feed(), CHANGED, hints, POLICY, NOW)
    assert update.skip_changed and decode_skip(update.skip).hours == {10, 11, 12}
    assert datetime.fromtimestamp(update.next_poll_at, UTC).hour == 13


def test_a_304_applies_the_stored_skip_hints_without_rewriting_them() -> None:
    stored = encode_skip(Skip(frozenset({10, 11, 12}), frozenset()))
    update = plan_next_poll(feed(skip=stored), NOT_MODIFIED, FeedHints(), POLICY, NOW)
    assert not update.skip_changed
    assert datetime.fromtimestamp(update.next_poll_at, UTC).hour == 13


def test_adaptive_polls_once_per_recent_entry() -> None:
    policy = dataclasses.replace(POLICY, adaptive=True)
    busy = plan_next_poll(feed(), CHANGED, FeedHints(), policy, NOW, recent_entries=60)
    quiet = plan_next_poll(feed(), CHANGED, FeedHints(), policy, NOW, recent_entries=0)
    assert delay(busy) == pytest.approx(ADAPTIVE_WINDOW / 60, rel=0.11)
    assert delay(quiet) == pytest.approx(6 * HOUR, rel=0.11)


def test_a_first_permanent_redirect_is_remembered_not_followed() -> None:
    moved = dataclasses.replace(CHANGED, permanent_redirect="https://new.example/feed")
    update = plan_next_poll(feed(), moved, FeedHints(), POLICY, NOW)
    assert update.fetch_url is None
    assert update.redirect_target == "https://new.example/feed" and not update.redirect_same


def test_the_same_permanent_redirect_counts_up() -> None:
    moved = dataclasses.replace(CHANGED, permanent_redirect="https://new.example/feed")
    state = feed(redirect_target="https://new.example/feed", redirect_count=1)
    update = plan_next_poll(state, moved, FeedHints(), POLICY, NOW)
    assert update.fetch_url is None and update.redirect_same


def test_a_permanent_redirect_seen_three_times_moves_the_feed() -> None:
    moved = dataclasses.replace(CHANGED, permanent_redirect="https://new.example/feed")
    state = feed(
        redirect_target="https://new.example/feed", redirect_count=MOVE_AFTER_REDIRECTS - 1
    )
    update = plan_next_poll(state, moved, FeedHints(), POLICY, NOW)
    assert update.fetch_url == "https://new.example/feed"
    assert update.redirect_target is None


def test_a_good_poll_of_a_broken_feed_reports_it_recovered() -> None:
    state = feed(consecutive_failures=5, failing_since=NOW - 2 * HOUR, broken_reported=True)
    assert plan_next_poll(state, CHANGED, FeedHints(), POLICY, NOW).health == "source.recovered"


def test_a_good_poll_of_a_failing_feed_not_yet_broken_reports_nothing() -> None:
    state = feed(consecutive_failures=2, failing_since=NOW - 600)
    assert plan_next_poll(state, CHANGED, FeedHints(), POLICY, NOW).health is None


# --------------------------------------------------------------------------- a failure


@pytest.mark.parametrize(("failures", "step"), [(0, 60.0), (1, 120.0), (3, 480.0), (20, 6 * HOUR)])
def test_failures_back_off_exponentially_up_to_the_cap(failures: int, step: float) -> None:
    rng = random.Random(failures)
    state = feed(consecutive_failures=failures, failing_since=NOW - 60)
    delays = [
        delay(plan_after_failure(state, Failure("http_status", "HTTP 500"), POLICY, NOW, rng=rng))
        for _ in range(200)
    ]
    assert step / 2 <= min(delays) and max(delays) <= step


def test_a_retry_after_longer_than_the_backoff_is_obeyed() -> None:
    update = plan_after_failure(feed(), Failure("http_status", "429", 600.0), POLICY, NOW)
    assert delay(update) == 600.0


@pytest.mark.parametrize("retry_after", [0.0, 5.0, -120.0])
def test_a_retry_after_of_zero_or_in_the_past_never_shortens_the_backoff(
    retry_after: float,
) -> None:
    # Issue 13, item 7: `Retry-After: 0` (or an HTTP date already past) made a failing feed be
    # polled on every tick.
    state = feed(consecutive_failures=9, failing_since=NOW - 5 * HOUR)
    rng = random.Random(3)
    delays = [
        delay(
            plan_after_failure(
                state, Failure("http_status", "503", retry_after), POLICY, NOW, rng=rng
            )
        )
        for _ in range(100)
    ]
    assert min(delays) >= 3 * HOUR  # half of the capped step (6 h): the normal backoff


def test_the_first_failure_starts_the_failing_clock() -> None:
    update = plan_after_failure(feed(), Failure("timeout", "slow"), POLICY, NOW)
    assert update.failing_since == NOW and update.health is None and not update.ok


def test_failing_for_broken_after_reports_the_feed_broken_once() -> None:
    failing = feed(consecutive_failures=4, failing_since=NOW - HOUR)
    assert plan_after_failure(failing, Failure("x", "y"), POLICY, NOW).health == "source.broken"
    reported = dataclasses.replace(failing, broken_reported=True)
    assert plan_after_failure(reported, Failure("x", "y"), POLICY, NOW).health is None


def test_a_failure_keeps_the_servers_bound() -> None:
    update = plan_after_failure(feed(min_interval=HOUR), Failure("x", "y"), POLICY, NOW)
    assert update.min_interval == HOUR


def test_a_host_wide_retry_after_defers_the_host_only_when_configured() -> None:
    told = Failure("http_status", "429", 600.0)
    feed_scope = plan_after_failure(feed(), told, POLICY, NOW, host="news.example")
    host_policy = dataclasses.replace(POLICY, host_wide_retry_after=True)
    host_scope = plan_after_failure(feed(), told, host_policy, NOW, host="news.example")
    no_header = plan_after_failure(feed(), Failure("x", "y"), host_policy, NOW, host="h")
    assert feed_scope.defer_host is None and no_header.defer_host is None
    assert host_scope.defer_host == "news.example"


def test_skip_hints_round_trip_and_garbage_reads_as_none() -> None:
    skip = Skip(frozenset({0, 23}), frozenset({"Sunday"}))
    assert decode_skip(encode_skip(skip)) == Skip(frozenset({0, 23}), frozenset({"sunday"}))
    assert decode_skip("h:99,x;d:") == Skip() and encode_skip(Skip()) is None


# --------------------------------------------------------------------------- inputs


def test_hints_of_a_parsed_feed_carry_its_ttl_in_seconds_and_its_skip_hints() -> None:
    parsed = ParsedFeed(title="t", link=None, ttl_minutes=120, skip_hours=frozenset({3}))
    hints = FeedHints.of(parsed, cache_max_age=30.0)
    assert hints == FeedHints(
        ttl=7200.0, skip=Skip(frozenset({3}), frozenset()), cache_max_age=30.0
    )
    assert FeedHints.of(None, None) == FeedHints()  # a 304: no new hints


def test_the_policy_is_resolved_from_the_feed_and_the_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""
database: sqlite:///{tmp_path}/monitor.db
fetch: {{backoff_base: 30s, backoff_max: 2h, broken_after: 3h, retry_after_scope: host}}
defaults: {{interval: 1m, min_interval: 10s, max_interval: 6h, adaptive: true}}
feeds:
  - {{url: "https://a.example/feed"}}
  - {{url: "https://b.example/feed", interval: 5m}}
""")
    settings = load_config(cfg)
    shared, own = (poll_policy(settings, f) for f in settings.feed_list)
    assert shared == PollPolicy(60.0, 10.0, 6 * HOUR, True, 30.0, 2 * HOUR, 3 * HOUR, True)
    # A feed with its own interval is left alone by adaptive polling.
    assert own.interval == 300.0 and not own.adaptive
